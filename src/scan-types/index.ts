/**
 * The scan types ImageMedix analyses, in one table (src/scan-types/index.ts). Everything that
 * differs between a brain MRI and a chest X-ray is an entry field here: the model's labels, the
 * finding's shape (TypeBox), the decision rule from probabilities to a finding, the one-line
 * summary, the display name, which DICOM images are of the type, the analysis route and the
 * release targets of its model. A third type is one entry here plus a model manifest in models/.
 */
import {
  Type,
  type Static,
  type TBoolean,
  type TLiteral,
  type TNull,
  type TNumber,
  type TOptional,
  type TProperties,
  type TString,
  type TUnion,
} from '@sinclair/typebox';
import { Nullable } from '../platform/http/schemas.js';

const ModelRefSchema = Type.Object({ id: Type.String(), version: Type.String() });
/** Calibrated probability of each of the model's labels. */
const probabilitiesOf = <L extends string>(labels: readonly L[]) =>
  Type.Object(Object.fromEntries(labels.map((l) => [l, Type.Number({ minimum: 0, maximum: 1 })])) as Record<L, TNumber>);

const BRAIN_LABELS = ['glioma', 'meningioma', 'notumor', 'pituitary'] as const;
const CHEST_LABELS = ['normal', 'bacterial', 'viral'] as const;

/** How the type of an analysis was settled (src/ml/routing.ts). */
const RoutingSchema = Type.Object({
  /** declared: given by the uploader or the analyze endpoint; dicom: from the header; image: by the router. */
  source: Type.Union([Type.Literal('declared'), Type.Literal('dicom'), Type.Literal('image')]),
  scanType: Type.String(),
  /** The router's probability for that type. */
  probability: Type.Number(),
  detail: Type.Optional(Type.String()),
});

/** What every finding carries besides its type's own fields: how the answer was reached. */
const commonFindingFields = {
  /** The named operating point in use (CHEST_OPERATING_POINT), e.g. screening; "argmax" for brain 1.x. */
  operatingPoint: Type.String(),
  /** Whose temperature and threshold: the model's, or this site's (npm run calibrate). */
  calibration: Type.Union([Type.Literal('model'), Type.Literal('site')]),
  model: ModelRefSchema,
  routing: Type.Optional(RoutingSchema),
};

const BrainFindingSchema = Type.Object({
  scanType: Type.Literal('brain-mri'),
  hasTumor: Type.Boolean(),
  tumorType: Nullable(Type.Union([Type.Literal('glioma'), Type.Literal('meningioma'), Type.Literal('pituitary')])),
  /** Probability of the reported finding (of "no tumour" when hasTumor is false). */
  confidence: Type.Number({ minimum: 0, maximum: 1 }),
  probabilities: probabilitiesOf(BRAIN_LABELS),
  /** Image-based approximate position of the model's attention; only when hasTumor. */
  tumorLocation: Nullable(Type.String()),
  ...commonFindingFields,
});

const ChestFindingSchema = Type.Object({
  scanType: Type.Literal('chest-xray'),
  hasPneumonia: Type.Boolean(),
  pneumoniaType: Nullable(Type.Union([Type.Literal('bacterial'), Type.Literal('viral')])),
  /** P(pneumonia) when positive, else P(normal). */
  confidence: Type.Number({ minimum: 0, maximum: 1 }),
  probabilities: probabilitiesOf(CHEST_LABELS),
  /** Pneumonia is reported when P(bacterial) + P(viral) reaches this threshold of the operating point. */
  decisionThreshold: Type.Number(),
  ...commonFindingFields,
});

/** A model's finding as stored in `analyses.result`: exactly what the model said. */
export const FindingSchema = Type.Union([BrainFindingSchema, ChestFindingSchema]);
export type Finding = Static<typeof FindingSchema>;

/** What a decision rule says, before the finding is assembled (src/ml/inference.ts). */
interface Decision {
  /** Whether the finding is positive (a tumour, pneumonia). */
  present: boolean;
  /** The positive label reported, null when negative. */
  kind: string | null;
  confidence: number;
  /** The label whose activation map explains the finding. */
  explainedLabel: string;
  /** Type-specific fields of the finding beyond presence, kind and location. */
  extra?: Record<string, unknown>;
}

export interface ScanTypeSpec {
  /** As printed in reports: "Brain MRI". */
  displayName: string;
  /** In a sentence: "a brain MRI" -> "brain MRI". */
  name: string;
  /** What an image of this type is, for refusal messages: "a brain MRI slice". */
  subject: string;
  /** What is analysed, by its DICOM terms, for a refused header: "brain MRI (MR of the head)". */
  dicomScope: string;
  /** The route under /api/ml that queues this analysis (fixed by the API document). */
  analyzeRoute: string;
  /** The model's classes; a manifest must list exactly these. */
  labels: readonly string[];
  /** The class that means "nothing found". */
  negativeLabel: string;
  /** The finding's schema. */
  finding: typeof BrainFindingSchema | typeof ChestFindingSchema;
  /** Finding fields: the yes/no, the kind when yes, the image location when yes (optional). */
  fields: { presence: string; kind: string; location?: string };
  /** "tumour" in "No tumour detected" / "Tumour detected: glioma". */
  noun: string;
  /**
   * Probabilities by label (calibrated) -> finding, at the operating point's threshold (null
   * for types decided by the most probable class).
   */
  decide(p: Readonly<Record<string, number>>, threshold: number | null): Decision;
  /** The manifest must give decision thresholds (operating points) and positiveLabels. */
  needsPositiveThreshold: boolean;
  /** DICOM Modality and Body Part Examined of this type (a missing body part matches). */
  dicom: { modalities: readonly string[]; bodyParts: readonly string[] };
  /** The release bar of this type's model: metric name (ml/evaluate.ts) -> minimum. */
  targets: Readonly<Record<string, number>>;
  /** The bar on images from outside the training pool (`external/`), where the type has such a set. */
  externalTargets?: Readonly<Record<string, number>>;
}

function argmaxLabel(p: Readonly<Record<string, number>>, labels: readonly string[]): string {
  let best = labels[0]!;
  for (const l of labels) if (p[l]! > p[best]!) best = l;
  return best;
}

const SCAN_TYPES = {
  'brain-mri': {
    displayName: 'Brain MRI',
    name: 'brain MRI',
    subject: 'a brain MRI slice',
    dicomScope: 'brain MRI (MR of the head)',
    analyzeRoute: '/brain/analyze',
    labels: BRAIN_LABELS,
    negativeLabel: 'notumor',
    finding: BrainFindingSchema,
    fields: { presence: 'hasTumor', kind: 'tumorType', location: 'tumorLocation' },
    noun: 'tumour',
    // The most probable class.
    decide(p) {
      const label = argmaxLabel(p, BRAIN_LABELS);
      const present = label !== 'notumor';
      return { present, kind: present ? label : null, confidence: p[label]!, explainedLabel: label };
    },
    needsPositiveThreshold: false,
    dicom: { modalities: ['MR'], bodyParts: ['HEAD', 'BRAIN', 'SKULL'] },
    targets: { accuracy: 0.97, macroF1: 0.97 },
  },
  'chest-xray': {
    displayName: 'Chest X-ray',
    name: 'chest X-ray',
    subject: 'a chest X-ray',
    dicomScope: 'chest X-rays (CR/DX of the chest)',
    analyzeRoute: '/chest/analyze',
    labels: CHEST_LABELS,
    negativeLabel: 'normal',
    finding: ChestFindingSchema,
    fields: { presence: 'hasPneumonia', kind: 'pneumoniaType' },
    noun: 'pneumonia',
    // Pneumonia when P(bacterial) + P(viral) reaches the manifest's threshold (chosen for
    // sensitivity); its kind is the likelier of the two.
    decide(p, threshold) {
      if (threshold === null) throw new Error('the chest X-ray decision needs a threshold');
      const pneumonia = p.bacterial! + p.viral!;
      const present = pneumonia >= threshold;
      const kind = present ? (p.bacterial! >= p.viral! ? 'bacterial' : 'viral') : null;
      return {
        present,
        kind,
        confidence: present ? pneumonia : p.normal!,
        explainedLabel: kind ?? 'normal',
        extra: { decisionThreshold: threshold },
      };
    },
    needsPositiveThreshold: true,
    // Projection radiography: computed (CR), digital (DX) and the generic radiographic modality (RG).
    dicom: { modalities: ['CR', 'DX', 'RG'], bodyParts: ['CHEST', 'THORAX', 'LUNG'] },
    targets: { 'binary accuracy': 0.94, 'binary AUC': 0.98, 'binary sensitivity': 0.95 },
    // Issue 10, on external/ as served (plus ECE <= 0.05 and false refusals <= 1%).
    externalTargets: { 'binary accuracy': 0.95, 'binary AUC': 0.98, 'binary sensitivity': 0.95, 'binary specificity': 0.9 },
  },
} as const satisfies Record<string, ScanTypeSpec>;

export type ScanType = keyof typeof SCAN_TYPES;
type Fields = (typeof SCAN_TYPES)[ScanType]['fields'];
type LocationField = Extract<Fields, { location: string }>['location'];
/** Every scan type, in table order (a non-empty tuple, as Drizzle's text enums want). */
export const SCAN_TYPE_IDS = Object.keys(SCAN_TYPES) as [ScanType, ...ScanType[]];

// Typed as the union of the table's keys (TypeBox cannot infer it from a mapped array).
export const ScanTypeSchema = Type.Union(SCAN_TYPE_IDS.map((t) => Type.Literal(t))) as unknown as TUnion<[TLiteral<ScanType>]>;

export function isScanType(value: unknown): value is ScanType {
  return typeof value === 'string' && Object.hasOwn(SCAN_TYPES, value);
}

/** "a, b and c" (or "a, b or c"): the scan types in a sentence, in the table's order. */
export function listInWords(words: readonly string[], conjunction: 'and' | 'or'): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} ${conjunction} ${words.at(-1)!}`;
}

export function scanTypeSpec(type: ScanType): ScanTypeSpec {
  return SCAN_TYPES[type];
}

const humanize = (s: string) => s.replace(/[-_]+/g, ' ');
const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * One line a reader understands: "Tumour detected: glioma", "No pneumonia detected". Works on
 * a model finding or a reviewed one (any object with the type's fields); the first type whose
 * yes/no field is set decides.
 */
export function findingSummary(result: object): string {
  const r = result as Record<string, unknown>;
  for (const type of SCAN_TYPE_IDS) {
    const { fields, noun } = scanTypeSpec(type);
    const present = r[fields.presence];
    if (typeof present !== 'boolean') continue;
    if (!present) return `No ${noun} detected`;
    const kind = r[fields.kind];
    return typeof kind === 'string' && kind
      ? `${capitalize(noun)} detected: ${humanize(kind)}`
      : `${capitalize(noun)} detected (type not specified)`;
  }
  return 'No structured finding: see the notes';
}

/**
 * Which type a DICOM image is, from Modality (0008,0060) and Body Part Examined (0018,0015):
 * the modality must be one of the type's, and the body part one of the type's or missing
 * (many scanners leave it empty). Null when none fits (CT, US, an MR of the knee...). A
 * suggestion for the uploader to confirm, not a diagnosis-grade classification.
 */
export function scanTypeOfDicom(modality: string | undefined, bodyPart: string | undefined): ScanType | null {
  const m = modality?.trim().toUpperCase();
  const part = bodyPart?.trim().toUpperCase() || undefined;
  if (!m) return null;
  for (const type of SCAN_TYPE_IDS) {
    const { dicom } = scanTypeSpec(type);
    if (dicom.modalities.includes(m) && (part === undefined || dicom.bodyParts.includes(part))) return type;
  }
  return null;
}

type NullableString = TUnion<[TString, TNull]>;
/** The finding fields of every type, flat, as the API shows and reviews them. */
type FindingFields = { [K in Fields['presence']]: TOptional<TBoolean> } & {
  [K in Fields['kind'] | LocationField]: TOptional<NullableString>;
} & { confidence: TOptional<TUnion<[TNumber, TNull]>>; additionalNotes: TOptional<NullableString> };

/** The finding fields of every type, for the API's flat result object; `strict` adds input limits. */
function findingFields(strict: boolean): FindingFields {
  const props: TProperties = {};
  for (const type of SCAN_TYPE_IDS) {
    const { presence, kind, location } = scanTypeSpec(type).fields;
    props[presence] = Type.Optional(Type.Boolean());
    props[kind] = Type.Optional(Nullable(Type.String(strict ? { minLength: 1, maxLength: 100 } : {})));
    if (location) props[location] = Type.Optional(Nullable(Type.String(strict ? { maxLength: 200 } : {})));
  }
  props.confidence = Type.Optional(Nullable(Type.Number(strict ? { minimum: 0, maximum: 1 } : {})));
  props.additionalNotes = Type.Optional(Nullable(Type.String(strict ? { maxLength: 5000 } : {})));
  return props as FindingFields;
}

/**
 * What a physician's review may set (stored in `scan_reviews.result`): the yes/no, kind and
 * location of any type, a confidence and notes. Which fields apply is checked against the
 * scan's type when the review is merged.
 */
export const ReviewedFindingSchema = Type.Object(findingFields(true), { additionalProperties: false });
export type ReviewedFinding = Static<typeof ReviewedFindingSchema>;

/** A finding as the API shows it: the model's or the reviewed one, with the model and its link. */
export const ResultSchema = Type.Object(
  {
    ...findingFields(false),
    probabilities: Type.Optional(Type.Record(Type.String(), Type.Number())),
    model: Type.Optional(Nullable(ModelRefSchema)),
    heatmapUrl: Type.Optional(Nullable(Type.String({ description: 'Signed, expiring link' }))),
    decisionThreshold: Type.Optional(Nullable(Type.Number({ description: 'Chest: pneumonia when P(bacterial) + P(viral) reaches it' }))),
    operatingPoint: Type.Optional(Nullable(Type.String({ description: 'The named operating point used (CHEST_OPERATING_POINT)' }))),
    calibration: Type.Optional(Nullable(Type.String({ description: '"model": as shipped; "site": this site\'s calibration' }))),
    routing: Type.Optional(Nullable(RoutingSchema)),
    region: Type.Optional(
      Nullable(
        Type.Object(
          { x: Type.Number(), y: Type.Number(), width: Type.Number(), height: Type.Number() },
          {
            description:
              "Box around the heatmap's hottest region, in pixels of the scan image: where the model looked, not a lesion outline",
          },
        ),
      ),
    ),
  },
  { description: 'The current finding: the physician-reviewed one when reviewed, else the model output' },
);
export type ResultView = Static<typeof ResultSchema>;
