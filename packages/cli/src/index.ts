export { main, EDIT, GENERATE, INSPECT } from './main';
export type { CliIO } from './main';
export { CliError } from './args';
