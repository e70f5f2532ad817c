export * from './client.js';
export * from './secure-message.js';
