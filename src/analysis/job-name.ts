export const ANALYZE_SCAN_JOB = 'analyze-scan';
