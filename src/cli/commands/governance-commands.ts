import type { Command } from 'commander';
import { CliError, type GlobalOptions, clientOf, print } from '../context.js';

/**
 * `qkm policy contacts <aid>`: read, replace and explain a governed agent's contact policy
 * (issue #12). Hangs under the existing `policy` command (the posture policy's `explain`).
 */

interface Rule {
  pattern: string;
  budget: number;
}

interface Decision {
  responder: string;
  initiator: string;
  outcome: string;
  rule?: Rule;
  used: number;
  remaining: number;
  window: { seconds: number; start: string; end: string };
  table: Array<Rule & { specificity: number[]; matches: boolean; chosen: boolean; why: string }>;
}

/** `pattern=budget`; split at the LAST '=' (an e-mail local part may itself hold '='). */
export function parseRuleArg(arg: string): Rule {
  const eq = arg.lastIndexOf('=');
  const budget = eq < 0 ? Number.NaN : Number(arg.slice(eq + 1));
  if (eq <= 0 || !/^-?\d+$/.test(arg.slice(eq + 1)) || !Number.isSafeInteger(budget))
    throw new CliError(`--set takes pattern=budget (an integer, negative blocks), got '${arg}'`);
  return { pattern: arg.slice(0, eq), budget };
}

export function registerGovernanceCommands(program: Command): void {
  const policy =
    program.commands.find((c) => c.name() === 'policy') ?? program.command('policy').description('policies');
  policy
    .command('contacts <aid>')
    .description(
      "a governed agent's contact policy; with --initiator, explain the decision for that initiator",
    )
    .option('--initiator <aid>', 'explain what this initiator would get now (consumes nothing)')
    .option(
      '--set <rules...>',
      'replace the policy with these pattern=budget rules (e.g. bob@example.com:mail=5 *=-1)',
    )
    .option('--clear', 'replace the policy with no rules (nobody may contact the agent)')
    .action(async (aid: string, o: { initiator?: string; set?: string[]; clear?: boolean }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const client = await clientOf(opts, true);
      if (o.set || o.clear) {
        if (o.set && o.clear) throw new CliError('use either --set or --clear');
        const rules = (o.set ?? []).map(parseRuleArg);
        const p = await client.contacts.set<{ aid: string; rules: Rule[] }>(aid, rules);
        print(opts, p, () => formatPolicy(p));
        if (!o.initiator) return;
      }
      if (o.initiator) {
        const d = await client.contacts.decision<Decision>(aid, o.initiator);
        print(opts, d, () => formatDecision(d));
        return;
      }
      const p = await client.contacts.get<{ aid: string; rules: Rule[] }>(aid);
      print(opts, p, () => formatPolicy(p));
    });
}

function formatPolicy(p: { aid: string; rules: Rule[] }): string {
  if (p.rules.length === 0) return `${p.aid}: no rules (nobody may contact it)`;
  return [
    `${p.aid}: ${p.rules.length} rule(s), most specific first`,
    ...p.rules.map((r) => `  ${r.pattern.padEnd(40)} ${r.budget < 0 ? 'block' : `budget ${r.budget}`}`),
  ].join('\n');
}

function formatDecision(d: Decision): string {
  const head =
    d.outcome === 'allowed'
      ? `ALLOWED: ${d.remaining} of ${d.rule?.budget} left until ${d.window.end}`
      : d.outcome === 'blocked'
        ? `BLOCKED by '${d.rule?.pattern}'`
        : d.outcome === 'no-match'
          ? 'NO CONTACT: no rule matches'
          : `BUDGET EXHAUSTED: ${d.used} of ${d.rule?.budget} used until ${d.window.end}`;
  return [
    `${d.initiator} -> ${d.responder}: ${head}`,
    ...d.table.map(
      (r) => `  ${r.chosen ? '*' : ' '} ${r.pattern.padEnd(40)} ${String(r.budget).padStart(6)}  ${r.why}`,
    ),
  ].join('\n');
}
