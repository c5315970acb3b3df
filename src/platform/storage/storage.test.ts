/**
 * The storage contract, on local disk for real and on S3 through the AWS SDK with its client
 * mocked (aws-sdk-client-mock): every command the adapter sends is checked, including the
 * paginated clean-up of a deleted scan's files.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
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
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';

import { createLocalStorage, createS3Storage, StorageNotFoundError } from './index.js';
import { PARTIAL_FOLDER } from './local.js';

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

  test('prepareFolders makes the folders before any write; a fresh put into one still works', async () => {
    const storage = createLocalStorage(dir);
    await storage.prepareFolders(['shards/00', 'shards/ff']);
    assert.deepEqual(readdirSync(path.join(dir, 'shards')).sort(), ['00', 'ff']);
    await storage.put('shards/ff/x.original.dcm', Buffer.from('dicom'), 'application/dicom', { fresh: true });
    assert.equal((await storage.get('shards/ff/x.original.dcm')).toString(), 'dicom');
    await storage.prepareFolders(['shards/ff']);
    assert.equal((await storage.get('shards/ff/x.original.dcm')).toString(), 'dicom', 'a folder made again keeps its files');
  });

  test("an upload's original is on disk (fdatasync) before its put resolves; a rendition's put does not wait", async (t) => {
    const storage = createLocalStorage(dir);
    const probe = await open(path.join(dir, 'probe'), 'w');
    const fileHandle = Object.getPrototypeOf(probe) as { datasync: () => Promise<void>; sync: () => Promise<void> };
    await probe.close();
    const datasync = t.mock.method(fileHandle, 'datasync');
    const sync = t.mock.method(fileHandle, 'sync');
    await storage.put('shards/aa/y.original.dcm', Buffer.from('dicom'), 'application/dicom', { fresh: true });
    assert.equal(datasync.mock.callCount() + sync.mock.callCount(), 1, 'the fresh original is synced once');
    await storage.put('shards/aa/y.image.png', Buffer.from('png'), 'image/png');
    assert.equal(datasync.mock.callCount() + sync.mock.callCount(), 1, 'a rendition is not synced');
    await storage.putStream('shards/aa/z.original.dcm', Readable.from([Buffer.from('large'), Buffer.from(' dicom')]), 'application/dicom');
    assert.equal(datasync.mock.callCount() + sync.mock.callCount(), 3, 'a streamed original: the file, then its folder after the rename');
    assert.equal((await storage.get('shards/aa/z.original.dcm')).toString(), 'large dicom');
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

  test('prepareFolders sends nothing: S3 keys need no folders', async () => {
    await createS3Storage(S3_CONFIG).prepareFolders(['scans/00']);
    assert.equal(s3.calls().length, 0);
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

describe('ranges and partial uploads left by a crash', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-storage-sweep-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const s3 = mockClient(S3Client);
  beforeEach(() => s3.reset());
  const HOUR = 3600 * 1000;

  test('local: readRange reads part of a file, short at its end; a missing file is "not found"', async () => {
    const storage = createLocalStorage(dir);
    await storage.put('scans/r/original.dcm', Buffer.from('0123456789'), 'application/dicom');
    assert.equal((await storage.readRange('scans/r/original.dcm', 2, 5)).toString(), '234');
    assert.equal((await storage.readRange('scans/r/original.dcm', 8, 100)).toString(), '89');
    assert.equal((await storage.readRange('scans/r/original.dcm', 20, 30)).length, 0);
    await assert.rejects(storage.readRange('scans/none/original.dcm', 0, 4), StorageNotFoundError);
  });

  test('local: temporary files live in one folder; the sweep removes the old ones only, never a write in progress', async () => {
    const storage = createLocalStorage(dir);
    const partial = path.join(dir, PARTIAL_FOLDER);
    // A write in progress: its temporary file is there until the stream ends.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* slow() {
      yield Buffer.alloc(1024, 1);
      await held;
      yield Buffer.alloc(1024, 2);
    }
    const writing = storage.putStream('scans/w/original.dcm', Readable.from(slow()), 'application/dicom');
    for (let i = 0; i < 200 && readdirSync(partial).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(readdirSync(partial).length, 1, 'the write in progress has its temporary file in the partial folder');
    // What two crashed uploads left: one an hour and a half ago, one a minute ago.
    const old = path.join(partial, 'original.dcm.crashed-old.tmp');
    const recent = path.join(partial, 'original.dcm.crashed-recent.tmp');
    writeFileSync(old, 'half a file');
    writeFileSync(recent, 'half a file');
    const ago = (ms: number) => new Date(Date.now() - ms);
    utimesSync(old, ago(1.5 * HOUR), ago(1.5 * HOUR));
    utimesSync(recent, ago(60_000), ago(60_000));

    // Two processes sweeping at once: each old file is removed once, the rest stays.
    const counts = await Promise.all([storage.sweepPartialUploads(ago(HOUR)), createLocalStorage(dir).sweepPartialUploads(ago(HOUR))]);
    assert.equal(counts[0] + counts[1], 1);
    const left = readdirSync(partial);
    assert.ok(!left.includes(path.basename(old)), 'the old leftover is gone');
    assert.ok(left.includes(path.basename(recent)), 'a recent one stays (its upload may still be running)');
    assert.equal(left.length, 2, 'the write in progress is untouched');

    release();
    await writing;
    assert.equal((await storage.get('scans/w/original.dcm')).length, 2048);
    assert.deepEqual(readdirSync(partial), [path.basename(recent)]);
    assert.equal(await createLocalStorage(path.join(dir, 'never-written')).sweepPartialUploads(new Date()), 0);
  });

  test('S3: readRange asks for the bytes by Range', async () => {
    s3.on(GetObjectCommand).resolves({ Body: { transformToByteArray: async () => new Uint8Array(Buffer.from('234')) } } as never);
    const got = await createS3Storage(S3_CONFIG).readRange('scans/r/original.dcm', 2, 5);
    assert.equal(got.toString(), '234');
    const input = s3.commandCalls(GetObjectCommand)[0]!.args[0].input;
    assert.equal(input.Key, 'site-a/scans/r/original.dcm');
    assert.equal(input.Range, 'bytes=2-4');
  });

  test('S3: the sweep aborts our old unfinished multipart uploads, on every page, and never one still receiving parts', async () => {
    const now = Date.now();
    const at = (ms: number) => new Date(now - ms);
    s3.on(ListMultipartUploadsCommand, { KeyMarker: undefined })
      .resolves({
        Uploads: [
          { Key: 'site-a/scans/a/original.dcm', UploadId: 'old', Initiated: at(3 * HOUR) },
          { Key: 'site-a/scans/b/original.dcm', UploadId: 'young', Initiated: at(60_000) },
        ],
        IsTruncated: true,
        NextKeyMarker: 'site-a/scans/b/original.dcm',
        NextUploadIdMarker: 'young',
      })
      .on(ListMultipartUploadsCommand, { KeyMarker: 'site-a/scans/b/original.dcm' })
      .resolves({
        Uploads: [
          { Key: 'site-a/scans/c/original.dcm', UploadId: 'old-but-sending', Initiated: at(5 * HOUR) },
          { Key: 'site-a/scans/d/original.dcm', UploadId: 'aborted-by-another', Initiated: at(5 * HOUR) },
        ],
        IsTruncated: false,
      });
    s3.on(ListPartsCommand).resolves({ Parts: [{ PartNumber: 1, LastModified: at(2 * HOUR) }] });
    s3.on(ListPartsCommand, { UploadId: 'old-but-sending' }).resolves({ Parts: [{ PartNumber: 1, LastModified: at(4 * HOUR) }, { PartNumber: 2, LastModified: at(1000) }] });
    s3.on(AbortMultipartUploadCommand).resolves({});
    s3.on(AbortMultipartUploadCommand, { UploadId: 'aborted-by-another' }).rejects(
      new S3ServiceException({ name: 'NoSuchUpload', $fault: 'client', $metadata: { httpStatusCode: 404 }, message: 'gone' }),
    );

    const removed = await createS3Storage(S3_CONFIG).sweepPartialUploads(at(HOUR));
    assert.equal(removed, 1);
    assert.deepEqual(
      s3.commandCalls(ListMultipartUploadsCommand).map((c) => c.args[0].input.Prefix),
      ['site-a/scans/', 'site-a/scans/'],
      'only our prefix is listed',
    );
    assert.deepEqual(
      s3.commandCalls(AbortMultipartUploadCommand).map((c) => c.args[0].input.UploadId),
      ['old', 'aborted-by-another'],
    );
  });
});
