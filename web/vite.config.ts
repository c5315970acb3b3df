// Builds the clinician web app into web/dist, served by the ImageMedix server itself.
// `npx vite web` runs a dev server that forwards the API to a server on port 3000.
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const api = process.env.IMAGEMEDIX_API ?? 'http://localhost:3000';

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 800 },
  server: { proxy: { '/api': api, '/files': api, '/reports': api } },
});
