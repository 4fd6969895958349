// Runs one latency round of tools/bench_server.py through the official TypeScript MCP SDK
// client, the library Claude Code and Claude Desktop are built on: the SDK spawns the server,
// initializes, lists the tools (so it validates each structured result against its tool's
// output schema, as a client does), then makes the calls of the plan, each after its pause.
//
//   node drive.mjs PLAN.json   (written by bench_server.py: the server's command, args, env and
//                               cwd, and the steps)
//
// Prints one JSON line: per step, the seconds from the call to its answer and what the checks
// in bench_server.py need. The server's stderr goes to this process's stderr.
import { readFile } from "node:fs/promises";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const plan = JSON.parse(await readFile(process.argv[2], "utf8"));
const transport = new StdioClientTransport({
  command: plan.command, args: plan.args, env: plan.env, cwd: plan.cwd, stderr: "inherit",
});
const client = new Client({ name: "bench-ts-sdk", version: "0" });
await client.connect(transport);
await client.listTools();

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const answers = [];
for (const step of plan.steps) {
  await sleep(step.pause_s);
  const started = process.hrtime.bigint();
  const result = step.tool ? await client.callTool({ name: step.tool, arguments: step.arguments }) : await client.ping();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.isError) throw new Error(`${step.tool} failed: ${JSON.stringify(result.content)}`);
  answers.push({ seconds, structured: result.structuredContent ?? null });
}
await client.close();
process.stdout.write(JSON.stringify(answers) + "\n");
