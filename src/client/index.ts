export * from './client.js';
export * from './secure-message.js';
export * from './session-channel.js';
