import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import type { S3Config } from '../config.js';
import { assertSafeKey, StorageNotFoundError, SweepUnsupportedError, type Storage } from './index.js';

/**
 * Size of the parts of a streamed upload (S3's least is 5 MiB but for the last): what one
 * upload holds in memory while a part is sent.
 */
const PART_BYTES = 8 * 1024 * 1024;

export function createS3Storage(cfg: S3Config): Storage {
  const client = new S3Client({
    region: cfg.region,
    endpoint: cfg.endpoint ?? undefined,
    forcePathStyle: cfg.forcePathStyle,
    credentials:
      cfg.accessKeyId && cfg.secretAccessKey
        ? { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey }
        : undefined,
  });
  const k = (key: string) => {
    assertSafeKey(key);
    return cfg.prefix + key;
  };
  // A prefix such as `scans/<id>/` ends with a slash, which a key may not.
  const p = (prefix: string) => `${k(prefix.replace(/\/+$/, ''))}/`;
  const notFound = (err: unknown) =>
    err instanceof NoSuchKey || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
  /** Whether the multipart upload received a part at or after `since` (it is still being sent). */
  async function receivedPartSince(upload: { Bucket: string; Key: string; UploadId: string }, since: Date): Promise<boolean> {
    let marker: string | undefined;
    do {
      const page = await client.send(new ListPartsCommand({ ...upload, PartNumberMarker: marker }));
      if ((page.Parts ?? []).some((part) => part.LastModified && part.LastModified >= since)) return true;
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (marker);
    return false;
  }
  return {
    kind: 's3',
    async put(key, body, contentType) {
      await client.send(
        new PutObjectCommand({ Bucket: cfg.bucket, Key: k(key), Body: body, ContentType: contentType, ServerSideEncryption: 'AES256' }),
      );
    },
    async putStream(key, body, contentType) {
      const object = { Bucket: cfg.bucket, Key: k(key) };
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let uploadId: string | undefined;
      const parts: CompletedPart[] = [];
      const sendPart = async () => {
        const data = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        uploadId ??= (
          await client.send(new CreateMultipartUploadCommand({ ...object, ContentType: contentType, ServerSideEncryption: 'AES256' }))
        ).UploadId;
        const PartNumber = parts.length + 1;
        const sent = await client.send(new UploadPartCommand({ ...object, UploadId: uploadId, PartNumber, Body: data }));
        parts.push({ PartNumber, ETag: sent.ETag });
      };
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          pending.push(chunk);
          pendingBytes += chunk.length;
          if (pendingBytes >= PART_BYTES) await sendPart();
        }
        if (uploadId === undefined) {
          // It all fit in one part: one plain put.
          await client.send(
            new PutObjectCommand({ ...object, Body: Buffer.concat(pending, pendingBytes), ContentType: contentType, ServerSideEncryption: 'AES256' }),
          );
          return;
        }
        if (pendingBytes > 0) await sendPart();
        // Only now does the object exist under its key.
        await client.send(new CompleteMultipartUploadCommand({ ...object, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
      } catch (err) {
        body.destroy();
        // The parts sent so far are no object, but they are billed until aborted (a bucket
        // lifecycle rule for incomplete multipart uploads catches an abort that failed).
        if (uploadId !== undefined) {
          try {
            await client.send(new AbortMultipartUploadCommand({ ...object, UploadId: uploadId }));
          } catch {
            // Left to the lifecycle rule; the caller reports the error that matters.
          }
        }
        throw err;
      }
    },
    async get(key) {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket: cfg.bucket, Key: k(key) }));
        return Buffer.from(await out.Body!.transformToByteArray());
      } catch (err) {
        if (notFound(err)) throw new StorageNotFoundError(key);
        throw err;
      }
    },
    async readRange(key, start, end) {
      if (end <= start) return Buffer.alloc(0);
      try {
        const out = await client.send(new GetObjectCommand({ Bucket: cfg.bucket, Key: k(key), Range: `bytes=${start}-${end - 1}` }));
        return Buffer.from(await out.Body!.transformToByteArray());
      } catch (err) {
        if (notFound(err)) throw new StorageNotFoundError(key);
        // A range that starts past the end: no bytes there, as a short read on disk answers.
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) return Buffer.alloc(0);
        throw err;
      }
    },
    async sweepPartialUploads(olderThan) {
      // Only our keys (the prefix and its scans), and only uploads that began before the margin
      // and received no part since: one still being sent is left alone. Another process sweeping
      // at once aborts the same uploads; S3 answers NoSuchUpload to the second, which is fine.
      let removed = 0;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      do {
        const page = await client
          .send(new ListMultipartUploadsCommand({ Bucket: cfg.bucket, Prefix: `${cfg.prefix}scans/`, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }))
          .catch((err: unknown) => {
            // A store without the call answers 501 NotImplemented or 405: no sweep is possible
            // there, which retrying cannot change.
            const { name, $metadata } = err as { name?: string; $metadata?: { httpStatusCode?: number } };
            if (name === 'NotImplemented' || name === 'MethodNotAllowed' || $metadata?.httpStatusCode === 501 || $metadata?.httpStatusCode === 405) {
              throw new SweepUnsupportedError(
                'This S3-compatible store does not list unfinished multipart uploads: set a bucket lifecycle rule that aborts them (docs/deployment.md)',
              );
            }
            throw err;
          });
        for (const upload of page.Uploads ?? []) {
          if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated >= olderThan) continue;
          const object = { Bucket: cfg.bucket, Key: upload.Key, UploadId: upload.UploadId };
          try {
            if (await receivedPartSince(object, olderThan)) continue;
            await client.send(new AbortMultipartUploadCommand(object));
            removed++;
          } catch (err) {
            if ((err as { name?: string }).name !== 'NoSuchUpload' && !notFound(err)) throw err;
          }
        }
        keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      } while (keyMarker);
      return removed;
    },
    async listFolder(folder) {
      const files = [];
      let token: string | undefined;
      do {
        // Delimiter: the objects directly under the folder, not those of deeper "folders".
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: cfg.bucket, Prefix: p(folder), Delimiter: '/', ContinuationToken: token }),
        );
        for (const object of page.Contents ?? []) {
          if (!object.Key?.startsWith(cfg.prefix) || !object.LastModified) continue;
          files.push({ key: object.Key.slice(cfg.prefix.length), modifiedAt: object.LastModified });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return files;
    },
    async exists(key) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: cfg.bucket, Key: k(key) }));
        return true;
      } catch (err) {
        // Only "not there" is false; an outage or a permission problem is an error.
        if (notFound(err)) return false;
        throw err;
      }
    },
    async delete(key) {
      await client.send(new DeleteObjectCommand({ Bucket: cfg.bucket, Key: k(key) }));
    },
    async prepareFolders() {
      // Keys are names, not paths: nothing to make.
    },
    async deletePrefix(prefix) {
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: cfg.bucket, Prefix: p(prefix), ContinuationToken: token }),
        );
        const objects = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
        if (objects.length > 0) {
          const out = await client.send(new DeleteObjectsCommand({ Bucket: cfg.bucket, Delete: { Objects: objects } }));
          if (out.Errors?.length) throw new Error(`could not delete ${out.Errors.length} stored objects under ${prefix}`);
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
  };
}
