/**
 * The storage contract, on local disk for real and on S3 through the AWS SDK with its client
 * mocked (aws-sdk-client-mock): every command the adapter sends is checked, including the
 * paginated clean-up of a deleted scan's files.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';

import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';

import { createLocalStorage, createS3Storage, StorageNotFoundError } from './index.js';

const S3_CONFIG = {
  bucket: 'imagemedix-test',
  region: 'eu-west-1',
  endpoint: null,
  accessKeyId: 'AKIATEST',
  secretAccessKey: 'secret',
  forcePathStyle: true,
  prefix: 'site-a/',
};

describe('local storage', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-storage-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('put, get, exists, delete and deletePrefix of a scan folder', async () => {
    const storage = createLocalStorage(dir);
    await storage.put('scans/a/original.dcm', Buffer.from('dicom'), 'application/dicom');
    await storage.put('scans/a/image.png', Buffer.from('png'), 'image/png');
    await storage.put('scans/b/image.png', Buffer.from('other'), 'image/png');
    assert.equal((await storage.get('scans/a/original.dcm')).toString(), 'dicom');
    assert.equal(await storage.exists('scans/a/image.png'), true);
    await storage.delete('scans/a/image.png');
    assert.equal(await storage.exists('scans/a/image.png'), false);
    await storage.deletePrefix('scans/a/');
    await assert.rejects(storage.get('scans/a/original.dcm'), StorageNotFoundError);
    assert.equal((await storage.get('scans/b/image.png')).toString(), 'other');
  });

  test('a scan folder removed behind its back (another process deleted the scan) is made again', async () => {
    const storage = createLocalStorage(dir);
    await storage.put('scans/c/image.png', Buffer.from('one'), 'image/png');
    rmSync(path.join(dir, 'scans/c'), { recursive: true });
    await storage.put('scans/c/heatmap.png', Buffer.from('two'), 'image/png');
    assert.equal((await storage.get('scans/c/heatmap.png')).toString(), 'two');
    await storage.deletePrefix('scans/c/');
    await storage.put('scans/c/report.pdf', Buffer.from('three'), 'application/pdf');
    assert.equal((await storage.get('scans/c/report.pdf')).toString(), 'three');
    assert.deepEqual(readdirSync(path.join(dir, 'scans/c')), ['report.pdf'], 'no temporary file left');
  });

  for (const size of [9_000, 300 * 1024]) {
    test(`a fresh put (${size} bytes) writes in place, never over an existing file, and a failed one leaves nothing`, async () => {
      const storage = createLocalStorage(dir);
      const folder = `scans/fresh-${size}`;
      const first = Buffer.alloc(size, 1);
      await storage.put(`${folder}/original.dcm`, first, 'application/dicom', { fresh: true });
      assert.deepEqual(await storage.get(`${folder}/original.dcm`), first);
      assert.deepEqual(readdirSync(path.join(dir, folder)), ['original.dcm'], 'no temporary file');

      await assert.rejects(
        storage.put(`${folder}/original.dcm`, Buffer.alloc(size, 2), 'application/dicom', { fresh: true }),
        (err: NodeJS.ErrnoException) => err.code === 'EEXIST',
      );
      assert.deepEqual(await storage.get(`${folder}/original.dcm`), first, 'the existing file is untouched');

      // A key whose folder is a file cannot be written: the put fails and leaves no file behind.
      await assert.rejects(storage.put(`${folder}/original.dcm/x.png`, Buffer.alloc(size), 'image/png', { fresh: true }), /EEXIST|ENOTDIR/);
      assert.deepEqual(readdirSync(path.join(dir, folder)), ['original.dcm']);

      // A folder removed behind its back is made again.
      rmSync(path.join(dir, folder), { recursive: true });
      await storage.put(`${folder}/image.png`, first, 'image/png', { fresh: true });
      assert.deepEqual(readdirSync(path.join(dir, folder)), ['image.png']);
      await storage.deletePrefix(`${folder}/`);
    });
  }

  test('keys that could escape the folder are refused', async () => {
    const storage = createLocalStorage(dir);
    for (const key of ['../etc/passwd', 'scans/../../x', '/abs', 'scans//x']) {
      await assert.rejects(storage.put(key, Buffer.from('x'), 'text/plain'), /Unsafe storage key/, key);
    }
  });
});

describe('S3 storage', () => {
  const s3 = mockClient(S3Client);
  beforeEach(() => s3.reset());

  // The part of the SDK's stream body the adapter reads.
  const body = (text: string) => ({ transformToByteArray: async () => new Uint8Array(Buffer.from(text)) });
  const notFound = (name: string) =>
    new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: 404 }, message: name });

  test('put writes under the prefix with server-side encryption; get reads it back', async () => {
    s3.on(PutObjectCommand).resolves({});
    s3.on(GetObjectCommand, { Key: 'site-a/scans/a/image.png' }).resolves({ Body: body('png bytes') } as never);
    const storage = createS3Storage(S3_CONFIG);
    await storage.put('scans/a/image.png', Buffer.from('png bytes'), 'image/png');
    const put = s3.commandCalls(PutObjectCommand)[0]!.args[0].input;
    assert.equal(put.Bucket, 'imagemedix-test');
    assert.equal(put.Key, 'site-a/scans/a/image.png');
    assert.equal(put.ContentType, 'image/png');
    assert.equal(put.ServerSideEncryption, 'AES256');
    assert.equal((await storage.get('scans/a/image.png')).toString(), 'png bytes');
  });

  test('a missing object is "not found", whether S3 says NoSuchKey or only 404', async () => {
    const storage = createS3Storage(S3_CONFIG);
    s3.on(GetObjectCommand, { Key: 'site-a/scans/x/image.png' }).rejects(new NoSuchKey({ message: 'gone', $metadata: {} }));
    s3.on(GetObjectCommand, { Key: 'site-a/scans/y/image.png' }).rejects(notFound('NotFound'));
    await assert.rejects(storage.get('scans/x/image.png'), StorageNotFoundError);
    await assert.rejects(storage.get('scans/y/image.png'), StorageNotFoundError);
    s3.on(HeadObjectCommand).rejects(notFound('NotFound'));
    assert.equal(await storage.exists('scans/x/image.png'), false);
  });

  test('exists surfaces an outage instead of answering "no"', async () => {
    s3.on(HeadObjectCommand).rejects(
      new S3ServiceException({ name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'denied' }),
    );
    await assert.rejects(createS3Storage(S3_CONFIG).exists('scans/a/image.png'), /denied/);
  });

  test("deletePrefix removes every page of a scan's objects, and only that scan's", async () => {
    s3.on(ListObjectsV2Command, { ContinuationToken: undefined })
      .resolves({ Contents: [{ Key: 'site-a/scans/a/original.dcm' }, { Key: 'site-a/scans/a/image.png' }], IsTruncated: true, NextContinuationToken: 'page-2' })
      .on(ListObjectsV2Command, { ContinuationToken: 'page-2' })
      .resolves({ Contents: [{ Key: 'site-a/scans/a/thumb.png' }], IsTruncated: false });
    s3.on(DeleteObjectsCommand).resolves({});
    await createS3Storage(S3_CONFIG).deletePrefix('scans/a/');
    const lists = s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input);
    assert.deepEqual(lists.map((l) => l.Prefix), ['site-a/scans/a/', 'site-a/scans/a/']);
    const deleted = s3.commandCalls(DeleteObjectsCommand).flatMap((c) => c.args[0].input.Delete!.Objects!.map((o) => o.Key));
    assert.deepEqual(deleted, ['site-a/scans/a/original.dcm', 'site-a/scans/a/image.png', 'site-a/scans/a/thumb.png']);
  });

  test('a partial delete is an error, so the caller logs the files left behind', async () => {
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'site-a/scans/a/image.png' }], IsTruncated: false });
    s3.on(DeleteObjectsCommand).resolves({ Errors: [{ Key: 'site-a/scans/a/image.png', Code: 'AccessDenied' }] });
    await assert.rejects(createS3Storage(S3_CONFIG).deletePrefix('scans/a/'), /could not delete 1/);
  });
});

describe('streamed puts (putStream)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-storage-stream-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const s3 = mockClient(S3Client);
  beforeEach(() => s3.reset());

  /** 1 MB chunks; fails after `failAfter` of them when given. */
  async function* chunks(count: number, failAfter?: number) {
    for (let i = 0; i < count; i++) {
      if (i === failAfter) throw new Error('client went away');
      yield Buffer.alloc(1024 * 1024, i);
    }
  }

  test('local: the file appears whole once the stream ends; a failing stream leaves nothing', async () => {
    const storage = createLocalStorage(dir);
    await storage.putStream('scans/s/original.dcm', Readable.from(chunks(3)), 'application/dicom');
    const stored = await storage.get('scans/s/original.dcm');
    assert.equal(stored.length, 3 * 1024 * 1024);
    assert.equal(stored[2 * 1024 * 1024], 2);
    await assert.rejects(storage.putStream('scans/t/original.dcm', Readable.from(chunks(3, 2)), 'application/dicom'), /client went away/);
    assert.deepEqual(readdirSync(path.join(dir, 'scans/t')), [], 'no temporary file left');
  });

  test('S3: a large stream goes as a multipart upload of 8 MB parts, completed at its end', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-1' });
    s3.on(UploadPartCommand).callsFake((input: { PartNumber: number }) => ({ ETag: `etag-${input.PartNumber}` }));
    s3.on(CompleteMultipartUploadCommand).resolves({});
    await createS3Storage(S3_CONFIG).putStream('scans/a/original.dcm', Readable.from(chunks(20)), 'application/dicom');
    const create = s3.commandCalls(CreateMultipartUploadCommand)[0]!.args[0].input;
    assert.equal(create.Key, 'site-a/scans/a/original.dcm');
    assert.equal(create.ServerSideEncryption, 'AES256');
    assert.equal(create.ContentType, 'application/dicom');
    const parts = s3.commandCalls(UploadPartCommand).map((c) => (c.args[0].input.Body as Buffer).length);
    assert.deepEqual(parts, [8, 8, 4].map((mb) => mb * 1024 * 1024));
    const complete = s3.commandCalls(CompleteMultipartUploadCommand)[0]!.args[0].input;
    assert.deepEqual(complete.MultipartUpload!.Parts, [1, 2, 3].map((n) => ({ PartNumber: n, ETag: `etag-${n}` })));
    assert.equal(s3.commandCalls(PutObjectCommand).length, 0);
  });

  test('S3: a stream that fails midway is aborted, never completed', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-2' });
    s3.on(UploadPartCommand).resolves({ ETag: 'etag' });
    await assert.rejects(
      createS3Storage(S3_CONFIG).putStream('scans/b/original.dcm', Readable.from(chunks(20, 12)), 'application/dicom'),
      /client went away/,
    );
    assert.equal(s3.commandCalls(CompleteMultipartUploadCommand).length, 0);
    assert.deepEqual(
      s3.commandCalls(AbortMultipartUploadCommand).map((c) => c.args[0].input),
      [{ Bucket: 'imagemedix-test', Key: 'site-a/scans/b/original.dcm', UploadId: 'up-2' }],
    );
  });

  test('S3: a stream that fits one part is one plain put', async () => {
    s3.on(PutObjectCommand).resolves({});
    await createS3Storage(S3_CONFIG).putStream('scans/c/original.dcm', Readable.from(chunks(2)), 'application/dicom');
    assert.equal(s3.commandCalls(CreateMultipartUploadCommand).length, 0);
    assert.equal((s3.commandCalls(PutObjectCommand)[0]!.args[0].input.Body as Buffer).length, 2 * 1024 * 1024);
  });
});
