// Builds the viewer into noctis_pro/static/viewer/, where Django's staticfiles (and so collectstatic and nginx's
// /static/) find it. Everything is bundled: the decode worker and the codecs' WASM are emitted beside viewer.js
// and load from our own static URLs, never from a CDN. The `events` dependency stands in for Node's module:
// vtk.js (under @cornerstonejs/core) reaches xmlbuilder2, whose classes extend EventEmitter at load time.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const outDir = fileURLToPath(new URL('../noctis_pro/static/viewer', import.meta.url));

export default defineConfig({
  // Relative: the worker and the .wasm files resolve against viewer.js, whatever STATIC_URL is.
  base: './',
  publicDir: false,
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // The .wasm codecs must stay files (fetched and compiled by the worker), never data: URLs.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 4096,
    rolldownOptions: {
      input: fileURLToPath(new URL('./src/main.js', import.meta.url)),
      // The emscripten codecs reference fs/path only on their Node.js path (expected), and plugin timings are
      // advice for vite's authors: neither is worth a line in `make run`.
      onLog(level, log, handler) {
        if (log.code === 'PLUGIN_TIMINGS') return;
        if (String(log.message).includes('has been externalized for browser compatibility')) return;
        handler(level, log);
      },
      output: {
        // A fixed entry name, so the Django template can name it; chunks and assets carry a content hash.
        entryFileNames: 'viewer.js',
        chunkFileNames: 'chunks/[name]-[hash].js',
        assetFileNames: (asset) =>
          asset.names?.some((n) => n.endsWith('.css')) ? 'viewer.css' : 'assets/[name]-[hash][extname]',
      },
    },
  },
  // The dicom-image-loader starts its decoder as a module worker (new Worker(new URL(...), {type: 'module'})).
  worker: { format: 'es' },
});
