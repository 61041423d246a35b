export * from './module';
export * from './layers';
export * from './ops';
export * from './backend';
export * from './random';
