import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The map of src/: core/ at the bottom, the five blocks on it, server/ and cli/ on top. A block
// imports core and other blocks only through their index.ts; nothing below server/ and cli/
// imports them; core imports no block.
const BLOCKS = ['lists', 'coordination', 'listen', 'changes', 'cluster'];
const throughIndex = {
  group: ['../*/*', '!../*/index.js'],
  message: 'Import another folder of src/ through its index.ts (its public face), not its files.',
};
const notOnTop = {
  group: ['../server/*', '../cli/*'],
  message:
    'Nothing below server/ and cli/ imports them: calls go down (cli/server -> block -> core).',
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.pgcoord/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-console': ['error', { allow: ['warn', 'error'] }],
    },
  },
  {
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../*'], message: 'core/ imports no block: blocks stand on it.' }] },
      ],
    },
  },
  {
    files: BLOCKS.map((b) => `src/${b}/**/*.ts`),
    rules: { 'no-restricted-imports': ['error', { patterns: [throughIndex, notOnTop] }] },
  },
  {
    files: ['src/server/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            throughIndex,
            { group: ['../cli/*'], message: 'The server does not import the CLI.' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/cli/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [throughIndex] }],
    },
  },
  {
    files: ['src/index.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['./*/*', '!./*/index.js'], message: throughIndex.message },
            notOnTop,
          ],
        },
      ],
    },
  },
  {
    files: ['bench/**', 'test/**', 'scripts/**'],
    rules: { 'no-console': 'off' },
  },
);
