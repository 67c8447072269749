import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// The map of src/ is kept by a lint rule (eslint.config.js): these probes show it bites.
const eslint = new ESLint();

async function restricted(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-imports')
    .map((m) => m.message);
}

describe('the import map of src/', () => {
  it('refuses a block importing a file of another block instead of its index', async () => {
    const messages = await restricted(
      'src/coordination/probe.ts',
      "import { AttemptList } from '../lists/attempt-list.js';\nexport const x = AttemptList;\n",
    );
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/through its index\.ts/);
  });

  it('allows a block importing another block through its index', async () => {
    const code =
      "import { AttemptList } from '../lists/index.js';\nexport const x = AttemptList;\n";
    expect(await restricted('src/coordination/probe.ts', code)).toEqual([]);
  });

  it('refuses core importing a block, and a block importing the server or the CLI', async () => {
    const fromCore = "import { Listener } from '../listen/index.js';\nexport const x = Listener;\n";
    expect(await restricted('src/core/probe.ts', fromCore)).toHaveLength(1);
    const fromBlock =
      "import { createServer } from '../server/index.js';\nexport const x = createServer;\n";
    expect(await restricted('src/lists/probe.ts', fromBlock)).toHaveLength(1);
    const fromServer = "import { main } from '../cli/index.js';\nexport const x = main;\n";
    expect(await restricted('src/server/probe.ts', fromServer)).toHaveLength(1);
  });
});
