// A real three-node Patroni cluster on loopback for the cluster pool's Patroni test: one etcd and
// three Patroni processes (Debian packages `patroni` and `etcd-server`), each managing its own
// PostgreSQL as the postgres OS user, on free ports, with data under a temporary folder.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { asPostgres } from './pg-instance.js';
import { waitFor } from './wait-for.js';

export interface PatroniMemberInfo {
  name: string;
  role: string;
  state: string;
  host: string;
  port: number;
}

export interface PatroniCluster {
  /** REST API base URLs, one per member. */
  restUrls: string[];
  /** PostgreSQL ports, one per member (same order as restUrls). */
  pgPorts: number[];
  names: string[];
  /** GET /cluster on the first member that answers. */
  members(): Promise<PatroniMemberInfo[]>;
  /** Name of the current leader (waits for one). */
  leader(timeoutMs?: number): Promise<string>;
  /** POST /switchover from the current leader to `candidate`. */
  switchover(candidate: string): Promise<void>;
  destroy(): Promise<void>;
}

/** Why a Patroni cluster cannot run here, or undefined when it can. */
export function patroniUnavailable(): string | undefined {
  for (const bin of ['patroni', 'etcd']) {
    if (spawnSync('which', [bin]).status !== 0) {
      return `${bin} is not installed (Debian packages patroni and etcd-server; .ci/run installs them)`;
    }
  }
  if (process.getuid?.() !== 0 && os.userInfo().username !== 'postgres') {
    return 'needs to run as root (to start Patroni as the postgres OS user) or as postgres';
  }
  return undefined;
}

function pgBindir(): string {
  const out = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (out.status === 0) return out.stdout.trim();
  const base = '/usr/lib/postgresql';
  const versions = fs.readdirSync(base).sort();
  return path.join(base, versions[versions.length - 1]!, 'bin');
}

/** The first port the kernel hands out for outgoing connections and `listen(0)`. */
function ephemeralLow(): number {
  try {
    const low = Number(
      fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    if (Number.isInteger(low) && low > 2048) return low;
  } catch {
    // No /proc: the Linux default.
  }
  return 32768;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A free port below the ephemeral range. The cluster's ports are chosen up front and bound over
 * the next tens of seconds; a port from `listen(0)` (the ephemeral range) can meanwhile be taken
 * by any outgoing connection or other test, and one was: a member's REST API failed with
 * EADDRINUSE. The kernel never hands out ports below the range by itself.
 */
async function listenPort(taken: Set<number>): Promise<number> {
  const high = ephemeralLow();
  const low = Math.max(1025, high - 12_000);
  for (let i = 0; i < 1000; i++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (taken.has(port) || !(await canListen(port))) continue;
    taken.add(port);
    return port;
  }
  throw new Error(`no free port in ${low}-${high - 1}`);
}

function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Starts etcd and three Patroni members; resolves once a leader and two streaming replicas run. */
export async function startPatroniCluster(
  options: { scope?: string } = {},
): Promise<PatroniCluster> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-patroni-'));
  fs.chmodSync(root, 0o755);
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const scope = options.scope ?? `pgcoord-${process.pid}`;
  const bindir = pgBindir();
  const ports = new Set<number>();
  const etcdClient = await listenPort(ports);
  const etcdPeer = await listenPort(ports);
  const etcdDir = path.join(root, 'etcd');
  const etcdLog = fs.openSync(path.join(root, 'etcd.log'), 'a');
  const etcd = spawn(
    'etcd',
    [
      '--name',
      'e1',
      '--data-dir',
      etcdDir,
      '--listen-client-urls',
      `http://127.0.0.1:${etcdClient}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${etcdClient}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${etcdPeer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster',
      `e1=http://127.0.0.1:${etcdPeer}`,
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', etcdLog, etcdLog] },
  );
  children.push(etcd);

  const names = ['pg1', 'pg2', 'pg3'];
  const restPorts: number[] = [];
  const pgPorts: number[] = [];
  for (let i = 0; i < names.length; i++) {
    restPorts.push(await listenPort(ports));
    pgPorts.push(await listenPort(ports));
  }
  const restUrls = restPorts.map((p) => `http://127.0.0.1:${p}`);

  // If this process exits without destroy() (a crash, a killed worker), take the children along.
  const onExit = () => {
    for (const c of children) c.kill('SIGKILL');
  };
  process.once('exit', onExit);

  const cluster: PatroniCluster = {
    restUrls,
    pgPorts,
    names,
    async members() {
      let last: unknown;
      for (const url of restUrls) {
        try {
          const res = await fetch(`${url}/cluster`, { signal: AbortSignal.timeout(2_000) });
          const body = (await res.json()) as { members: PatroniMemberInfo[] };
          return body.members;
        } catch (err) {
          last = err;
        }
      }
      throw last;
    },
    async leader(timeoutMs = 60_000) {
      return waitFor(
        async () =>
          (await cluster.members()).find((m) => m.role === 'leader' && m.state === 'running')?.name,
        { timeoutMs, message: 'a Patroni leader' },
      );
    },
    async switchover(candidate) {
      const leader = await cluster.leader();
      const url = restUrls[names.indexOf(leader)]!;
      const res = await fetch(`${url}/switchover`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ leader, candidate }),
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`switchover answered ${res.status}: ${text}`);
    },
    async destroy() {
      process.off('exit', onExit);
      // Patroni members stop their PostgreSQL on SIGTERM; etcd goes last.
      await Promise.all(children.slice(1).map((c) => stopChild(c, 30_000)));
      await stopChild(etcd, 10_000);
      // A member that had to be killed leaves its PostgreSQL running: stop that one by data dir.
      for (const name of names) {
        const dataDir = path.join(root, name, 'data');
        if (!fs.existsSync(path.join(dataDir, 'postmaster.pid'))) continue;
        const [cmd, args] = asPostgres(path.join(bindir, 'pg_ctl'), [
          'stop',
          '-D',
          dataDir,
          '-m',
          'immediate',
          '-w',
          '-t',
          '30',
        ]);
        spawnSync(cmd, args);
      }
      fs.rmSync(root, { recursive: true, force: true });
    },
  };

  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, {
      timeoutMs: 20_000,
      message: 'etcd to answer',
    });
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const dir = path.join(root, name);
      fs.mkdirSync(path.join(dir, 'sock'), { recursive: true });
      const config = `scope: ${scope}
name: ${name}
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:${restPorts[i]}
  connect_address: 127.0.0.1:${restPorts[i]}
etcd3:
  hosts: 127.0.0.1:${etcdClient}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 104857600
    postgresql:
      use_pg_rewind: false
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        fsync: 'off'
        synchronous_commit: 'off'
        full_page_writes: 'off'
        shared_buffers: 32MB
        max_connections: 50
  initdb:
  - encoding: UTF8
  - locale: C
  - auth: trust
  pg_hba:
  - local all all trust
  - host replication all 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${pgPorts[i]}
  connect_address: 127.0.0.1:${pgPorts[i]}
  data_dir: ${path.join(dir, 'data')}
  bin_dir: ${bindir}
  pgpass: ${path.join(dir, 'pgpass')}
  authentication:
    replication:
      username: postgres
    superuser:
      username: postgres
  parameters:
    unix_socket_directories: ${path.join(dir, 'sock')}
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
`;
      fs.writeFileSync(path.join(dir, 'patroni.yml'), config);
      if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'postgres:postgres', root]);
      const log = fs.openSync(path.join(dir, 'patroni.log'), 'a');
      const [cmd, args] = asPostgres('patroni', [path.join(dir, 'patroni.yml')]);
      const child = spawn(cmd, args, { stdio: ['ignore', log, log], cwd: dir });
      children.push(child);
      logs.push(path.join(dir, 'patroni.log'));
      if (i === 0) await cluster.leader(90_000);
    }
    await waitFor(
      async () => {
        const members = await cluster.members();
        return (
          members.length === 3 &&
          members.every((m) => m.state === 'running' || m.state === 'streaming')
        );
      },
      { timeoutMs: 120_000, message: 'three running Patroni members' },
    );
  } catch (err) {
    const tail = logs
      .map((l) => `${l}:\n${fs.existsSync(l) ? fs.readFileSync(l, 'utf8').slice(-1500) : ''}`)
      .join('\n');
    await cluster.destroy();
    throw new Error(`Patroni cluster did not start: ${(err as Error).message}\n${tail}`, {
      cause: err,
    });
  }
  return cluster;
}
