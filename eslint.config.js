// Type-aware lint rules from STYLE.md: no floating promises, exhaustive switches, strict equality.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/', 'data/', 'ml/', 'models/', 'coverage/', 'drizzle.config.ts', 'eslint.config.js',
      'dist/', 'web/dist/', 'web/vite.config.ts', 'web/src/api/openapi.d.ts', 'test-results/',
    ],
  },
  {
    files: ['**/*.ts', 'web/src/**/*.tsx'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/test return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'test', 'it', 'suite'] }] },
      ],
      // Fastify accepts async hooks and handlers where its types say void.
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/await-thenable': 'error',
      // `x == null` (null or undefined) is the one loose comparison allowed.
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // The server, its tests and scripts, and the web app also get typescript-eslint's
    // type-checked recommended set. The project service types each file with its nearest
    // tsconfig.json: web/tsconfig.json (DOM, bundler resolution) for the web app.
    files: ['src/**/*.ts', 'test/**/*.ts', 'scripts/**/*.ts', 'web/src/**/*.ts', 'web/src/**/*.tsx'],
    extends: [tseslint.configs.recommendedTypeChecked],
    rules: {
      // Fastify tells promise-style plugins, hooks and handlers from callback-style ones by
      // `async`: an async function with nothing to await is how one says "no done callback".
      '@typescript-eslint/require-await': 'off',
      // `_name` marks a parameter a signature requires; `const { a, ...rest }` leaves `a` out on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    // Fastify types inject()'s `res.json()` as any: tests read the fields of the answer they
    // assert on, and a wrong field fails the assertion itself.
    files: ['src/**/*.test.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
