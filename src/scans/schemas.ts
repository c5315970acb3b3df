import { Type, type Static } from '@sinclair/typebox';
import { DATE_OR_DATE_TIME_HINT, DateOrDateTime, IsoDateTime, Nullable, PageQuery, Text } from '../platform/http/schemas.js';
import { ResultSchema, ReviewedFindingSchema, SCAN_TYPE_IDS, ScanTypeSchema, scanTypeSpec } from '../scan-types/index.js';

const ScanStatusSchema = Type.Union([
  Type.Literal('pending'),
  Type.Literal('processing'),
  Type.Literal('completed'),
  Type.Literal('failed'),
]);

export const ListScansQuerySchema = Type.Object(
  {
    ...PageQuery,
    status: Type.Optional(ScanStatusSchema),
    scanType: Type.Optional(ScanTypeSchema),
    patientId: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: "The patient's patientId or _id" }),
    ),
    startDate: Type.Optional(DateOrDateTime),
    endDate: Type.Optional(
      Type.String({
        pattern: DateOrDateTime.pattern,
        'x-pattern-hint': DATE_OR_DATE_TIME_HINT,
        description: 'YYYY-MM-DD (the whole day is included) or ISO 8601 date-time',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ListScansQuery = Static<typeof ListScansQuerySchema>;

/** The merge rules of a review, from the scan-type table (also enforced by mergeReview). */
const MERGE_RULES = [
  'Merged into the current finding (the standing review, else the model output):',
  '- a field left out keeps its value; `null` clears it;',
  `- only the fields of the scan's type apply: ${SCAN_TYPE_IDS.map((type) => {
    const { fields, labels, negativeLabel } = scanTypeSpec(type);
    const kinds = labels.filter((l) => l !== negativeLabel).join(', ');
    return `${type} \`${fields.presence}\`, \`${fields.kind}\` (${kinds})${fields.location ? `, \`${fields.location}\`` : ''}`;
  }).join('; ')}; every type \`confidence\` and \`additionalNotes\`;`,
  '- "nothing found" (`hasTumor: false`, `hasPneumonia: false`) clears the kind and the location; naming a kind implies the finding is present;',
  '- when the finding changes and the current one has a confidence, `confidence` must be sent (a number or null): the old value was for another finding (400 otherwise).',
].join('\n');

/** What a physician's review may set: the finding fields of every scan type (src/scan-types). */
const ReviewResultSchema = Type.Object(ReviewedFindingSchema.properties, { additionalProperties: false, description: MERGE_RULES });

export const ReviewBodySchema = Type.Object(
  {
    status: Type.Optional(
      Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('failed')], {
        description: '"processing" is set by the analysis itself',
      }),
    ),
    result: Type.Optional(ReviewResultSchema),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type ReviewBody = Static<typeof ReviewBodySchema>;

export const ReviewHeadersSchema = Type.Object({
  'if-match': Type.Optional(
    Type.String({
      maxLength: 1000,
      description:
        'Optional: the ETag (or `findingVersion`) of the scan as the reviewer loaded it. When the finding has changed since (another review, a newer analysis), the review is not saved: 412 with `{"error"}` saying who reviewed it and when. Without it, the review is merged into the current finding whatever changed.',
    }),
  ),
});

export const AnnotationBodySchema = Type.Object(
  {
    x: Type.Number({ minimum: 0, description: 'Pixel column in the rendered image (0..width-1)' }),
    y: Type.Number({ minimum: 0, description: 'Pixel row in the rendered image (0..height-1)' }),
    text: Text({ maxLength: 2000 }),
  },
  { additionalProperties: false },
);
export type AnnotationBody = Static<typeof AnnotationBodySchema>;

const UserRef = Type.Object({ _id: Type.String(), name: Type.String() });

const ReviewSchema = Type.Object(
  {
    _id: Type.String(),
    reviewedBy: Nullable(UserRef),
    reviewedAt: IsoDateTime,
    status: Type.String({ description: 'The scan status the physician set or confirmed' }),
    result: ResultSchema,
    analysisId: Nullable(Type.String({ description: 'The analysis this review judged (analysisHistory[]._id); null before any' })),
    newerAnalysis: Type.Boolean({
      description:
        'True when an analysis finished after this review: `modelResult` is newer than the reviewed finding, which still stands (and is `result`) until a physician reviews again',
    }),
  },
  { description: "A physician's review: never overwritten or deleted by software" },
);

const AnnotationSchema = Type.Object({
  _id: Type.String(),
  x: Type.Number(),
  y: Type.Number(),
  text: Type.String(),
  createdAt: IsoDateTime,
  createdBy: Nullable(UserRef),
});

const ScanCore = {
  _id: Type.String(),
  patientId: Type.String({ description: "The patient's hospital identifier" }),
  patientName: Type.String(),
  scanDate: IsoDateTime,
  scanType: Nullable(ScanTypeSchema),
  imageUrl: Type.String({
    description:
      'Signed, expiring link to the rendered PNG: a relative path `/files/scans/<first two characters of _id>/<_id>.image.png?expires=...&signature=...` (absolute on PUBLIC_URL when set). The path without its query also answers a bearer token of someone who may see the scan.',
  }),
  thumbnailUrl: Type.String({ description: 'Signed, expiring link to a small PNG preview (same shape as imageUrl)' }),
  status: ScanStatusSchema,
};

export const UploadResponseSchema = Type.Object(ScanCore);

/** The upload's 409: a patient name that contradicts the record, or a DICOM header naming another patient. */
export const UploadConflictSchema = Type.Object(
  {
    error: Type.String(),
    dicomPatientId: Type.Optional(
      Type.String({
        description:
          "When the DICOM header's PatientID is not the form's patientId: that header identifier, to send back as `confirmDicomPatientId` once the uploader confirms the file is this patient's.",
      }),
    ),
    dicomPatientName: Type.Optional(
      Type.String({
        description:
          "When the DICOM header's PatientName shares no name with the patient's: that header name, to send back as `confirmDicomPatientName` once the uploader confirms the file is this patient's.",
      }),
    ),
  },
  { description: 'Every error, and for a DICOM header naming another patient its PatientID or PatientName' },
);

const FindingVersionSchema = Type.String({
  description:
    'The version of the finding (the standing review and the current analysis), also sent as the ETag of GET and PATCH /api/scans/:id. Send it back as `If-Match: "<findingVersion>"` with a review: if another review or a newer analysis changed the finding since, the review is refused with 412 instead of replacing a finding its author never saw.',
});

const ScanListItemSchema = Type.Object({
  ...ScanCore,
  result: Nullable(ResultSchema),
  review: Nullable(ReviewSchema),
  findingVersion: FindingVersionSchema,
  failureReason: Nullable(Type.String()),
  createdAt: IsoDateTime,
});

export const ScanListSchema = Type.Object({
  scans: Type.Array(ScanListItemSchema),
  currentPage: Type.Integer(),
  totalPages: Type.Integer(),
  totalScans: Type.Integer(),
});

const AnalysisHistoryEntrySchema = Type.Object({
  _id: Type.String(),
  status: Type.String({ description: 'queued, active, completed or failed' }),
  scanType: Nullable(ScanTypeSchema),
  model: Nullable(Type.Object({ id: Type.String(), version: Type.String() })),
  result: Nullable(ResultSchema),
  failureReason: Nullable(Type.String({ description: 'Why the model refused the image, or the error' })),
  requestedAt: IsoDateTime,
  completedAt: Nullable(IsoDateTime),
});

export const ScanDetailSchema = Type.Object({
  ...ScanCore,
  patient: Type.Object({ _id: Type.String(), patientId: Type.String(), name: Type.String() }),
  doctorId: Nullable(Type.Object({ _id: Type.String(), name: Type.String(), email: Type.String() })),
  result: Nullable(ResultSchema),
  modelResult: Type.Union([ResultSchema, Type.Null()], {
    description: 'The output of the current (latest finished) analysis, exactly as the model gave it',
  }),
  review: Type.Union([ReviewSchema, Type.Null()], { description: 'The standing review (the latest); null before any' }),
  findingVersion: FindingVersionSchema,
  reviews: Type.Array(ReviewSchema, { description: 'Every review of the scan, oldest first' }),
  failureReason: Nullable(Type.String()),
  annotations: Type.Array(AnnotationSchema),
  analysisHistory: Type.Array(AnalysisHistoryEntrySchema, { description: 'Every analysis of the scan, oldest first' }),
  originalFormat: Type.Union([Type.Literal('jpeg'), Type.Literal('png'), Type.Literal('dicom')]),
  width: Type.Integer(),
  height: Type.Integer(),
  dicom: Nullable(
    Type.Object({
      modality: Nullable(Type.String()),
      bodyPartExamined: Nullable(Type.String()),
      studyInstanceUid: Nullable(Type.String()),
      seriesInstanceUid: Nullable(Type.String()),
      sopInstanceUid: Nullable(Type.String()),
    }),
  ),
  createdAt: IsoDateTime,
  updatedAt: IsoDateTime,
});

const JobStatusSchema = Type.Object({
  state: Type.Union([Type.Literal('waiting'), Type.Literal('active'), Type.Literal('completed'), Type.Literal('failed')], {
    description: 'waiting (queued, or waiting to be retried), active, completed or failed',
  }),
  progress: Type.Integer({ minimum: 0, maximum: 100, description: '100 once the job is completed or failed (a refusal too)' }),
  stage: Nullable(
    Type.String({ description: 'decode, preprocess, inference, explanation or saving while the job runs; null while it waits and once it is completed or failed' }),
  ),
});

export const ScanStatusResponseSchema = Type.Object({
  status: ScanStatusSchema,
  failureReason: Nullable(Type.String()),
  jobStatus: Type.Union([JobStatusSchema, Type.Null()], {
    description: 'The latest analysis job; null only for a scan that was never queued (pending, no scan type)',
  }),
});

export const AnnotationsResponseSchema = Type.Object({
  _id: Type.String(),
  annotations: Type.Array(AnnotationSchema),
});

export const ReportResponseSchema = Type.Object({
  message: Type.String(),
  reportUrl: Type.String({
    description:
      'Signed, expiring link to the PDF: a relative path `/reports/report-<scanId>-<reportId>.pdf?expires=...&signature=...` (absolute on PUBLIC_URL when set)',
  }),
});

export const ReportFileParamsSchema = Type.Object({
  file: Type.String({ minLength: 1, maxLength: 120 }),
});

export const SignedQuerySchema = Type.Object({
  expires: Type.Optional(Type.String({ maxLength: 20 })),
  user: Type.Optional(Type.String({ maxLength: 64, description: 'The user the link was issued to' })),
  signature: Type.Optional(Type.String({ maxLength: 100 })),
});

export const PixelsResponseHeaders = {
  'x-image-width': 'columns',
  'x-image-height': 'rows',
  'x-pixel-format': 'int16 or float32 (little-endian, row by row)',
  'x-window-center': "the file's window centre, else the middle of its 0.5-99.5th percentiles",
  'x-window-width': 'the matching window width',
  'x-pixel-min': 'lowest modality value',
  'x-pixel-max': 'highest modality value',
  'x-photometric-invert': '"true" when high values are shown dark (MONOCHROME1)',
} as const;

export const StatusStreamQuerySchema = Type.Object(
  {
    ids: Type.String({
      minLength: 1,
      maxLength: 4000,
      description: 'Comma-separated scan _ids to follow (at most 50)',
    }),
  },
  { additionalProperties: false },
);

// The schema is the one definition of the stream's event (ScanStatusEvent below); the route
// itself can only declare text/event-stream, so the value is read by no code.
// eslint-disable-next-line @typescript-eslint/no-unused-vars
const ScanStatusEventSchema = Type.Object(
  {
    _id: Type.String(),
    status: Type.Union([ScanStatusSchema, Type.Literal('gone')], { description: '"gone": deleted or no longer yours' }),
    failureReason: Nullable(Type.String()),
    jobStatus: Nullable(
      Type.Object({ state: Type.String(), progress: Type.Integer(), stage: Nullable(Type.String()) }),
    ),
  },
  { description: 'The data of each `status` event of the stream' },
);
export type ScanStatusEvent = Static<typeof ScanStatusEventSchema>;
