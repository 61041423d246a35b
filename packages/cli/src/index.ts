export { main } from './main';
export { EDIT, GENERATE, INSPECT } from './commands';
export type { CliIO } from './shared';
export { CliError } from './args';
