/**
 * A model's probability as a percentage. One that rounds to 100% or 0% at `digits` is shown as
 * "> 99.9%" or "< 0.1%" (for one digit): a doctor reads "100.0% confidence" as certainty, which no
 * model's output is. The PDF report prints them the same way (src/reports/pdf.ts).
 */
export function percent(p: number | null | undefined, digits = 0): string {
  if (p == null) return '—';
  const text = (p * 100).toFixed(digits);
  const least = 10 ** -digits;
  if (Number(text) >= 100) return `> ${(100 - least).toFixed(digits)}%`;
  if (Number(text) <= 0) return `< ${least.toFixed(digits)}%`;
  return `${text}%`;
}
