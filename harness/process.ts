/** What a finished child process printed and how it exited. */
export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, collecting both output streams. */
export async function runCommand(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<Finished> {
  const proc = Bun.spawn(cmd, { ...options, stdout: 'pipe', stderr: 'pipe' });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}
