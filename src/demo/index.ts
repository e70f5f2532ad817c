/** The two-node demo: setup, agents, the conditions that reach each posture, and the report. */
export * from './agents.js';
export * from './conditions.js';
export * from './governed.js';
export * from './run.js';
export * from './setup.js';
