// The pgcoord command line as a module: `import { main } from 'pgcoord/cli'`.
export { main, buildProgram } from './main.js';
export { EXIT, exitCodeFor, CliError } from './exit-codes.js';
export { EmbeddedDatabase, freePort } from './embedded-database.js';
export type { EmbeddedDatabaseOptions } from './embedded-database.js';
export { serve } from './optional-dependency.js';
export type { ServeOptions } from './serve-command.js';
export type { GlobalOptions } from './options.js';
