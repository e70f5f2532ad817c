import type { Command } from 'commander';
export function registerApplianceCommands(_program: Command): void {}
