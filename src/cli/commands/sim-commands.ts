import type { Command } from 'commander';
export function registerSimCommands(_program: Command): void {}
