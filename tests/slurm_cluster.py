"""A real one-node SLURM cluster for the tests marked `slurm`, built from Debian's packages.

munged, MariaDB, slurmdbd, slurmctld and slurmd run as root from a private folder under /tmp, with
their own ports, sockets and configuration files (`SLURM_CONF` points the client commands at them),
so the machine's own SLURM or MariaDB configuration is neither read nor touched. `SlurmCluster` is a
context manager: whatever happens inside, the jobs are cancelled, the daemons it started are stopped
by their process ids and the folder is removed; the daemons also end when the test process dies.

The node is this machine: its CPUs and memory as `slurmd -C` reports them. Its partitions are the
two that workflow/profiles/slurm names, `cpu` (the default) and `gpu`. The node declares two GPUs
backed by empty files, so that the profile's GPU request (`sbatch --gpus=1`) is accepted and
scheduled by SLURM exactly as on a GPU cluster; the jobs find no CUDA device and run on the CPU.
Accounting goes through slurmdbd and MariaDB because snakemake-executor-plugin-slurm asks `sacct`
for the state of its jobs whenever `sacct` is installed, and `sacct` answers only from slurmdbd
("Slurm accounting storage is disabled" otherwise).

Inside a job, the plugin's job step runs `srun` with every SLURM_* variable removed but a few, so
`srun` looks for the configuration at SLURM's default path, /etc/slurm/slurm.conf. slurmd therefore
runs in a private mount namespace in which this cluster's folder is mounted on /etc/slurm: its jobs
see this configuration there, and nothing else on the machine does.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# program -> the Debian package that installs it
PROGRAMS = {
    "munged": "munge", "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client", "slurmdbd": "slurmdbd", "slurmctld": "slurmctld", "slurmd": "slurmd",
    "sbatch": "slurm-client", "sacct": "slurm-client", "sacctmgr": "slurm-client", "scancel": "slurm-client",
    "unshare": "util-linux", "setpriv": "util-linux", "mount": "mount",
}
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
N_GPUS = 2


def program(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the SLURM test starts munged, slurmctld and slurmd itself and needs root"
    missing = sorted({pkg for name, pkg in PROGRAMS.items() if program(name) is None})
    if missing:
        return ("SLURM is not installed (missing Debian packages: " + ", ".join(missing) + "; "
                "apt-get install slurmctld slurmd slurm-client slurmdbd munge mariadb-server)")
    if not Path("/etc/slurm").is_dir():
        return "/etc/slurm is missing (Debian's slurm-client creates it)"
    probe = subprocess.run([program("unshare") or "unshare", "--mount", "--propagation", "private", "--",
                            "mount", "--bind", "/etc/slurm", "/etc/slurm"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("the SLURM test runs slurmd in a private mount namespace and cannot make one here: "
                + probe.stderr.strip())
    return None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """Start with `with SlurmCluster() as cluster:`; `cluster.env` is the environment in which
    sbatch, sacct and Snakemake's SLURM executor talk to it."""

    def __init__(self):
        self.procs: list[tuple[str, subprocess.Popen]] = []
        # Under /tmp and executable by all: munged refuses a socket below a folder that others
        # cannot traverse (pytest's temporary folders are private).
        self.dir = Path(tempfile.mkdtemp(prefix="fersnet-slurm-", dir="/tmp"))
        self.dir.chmod(0o711)
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge.socket"
        self.db_socket = self.dir / "mariadb.socket"
        self.ctld_port, self.slurmd_port, self.dbd_port, self.db_port = free_ports(4)
        self.host = socket.gethostname().split(".")[0]
        self.node = self.host
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S")


    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        out = subprocess.run([program(cmd[0]) or cmd[0], *cmd[1:]], env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}\n{self.logs()}")
        return out

    def sacct(self) -> list[dict[str, str]]:
        """Every job of this cluster (allocations, not steps): id, run name, rule comment, state..."""
        fields = ["JobIDRaw", "JobName", "Comment", "State", "Partition", "AllocTRES", "ExitCode", "Start", "End"]
        out = self.run("sacct", "-X", "--parsable2", "--noheader", "--starttime", self.started_at,
                       "--format=" + ",".join(f"{f}%300" for f in fields))
        return [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines() if line.strip()]

    def logs(self, lines: int = 15) -> str:
        """The end of every daemon's log, for failure messages."""
        parts = []
        for log in sorted(self.dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._write_configs()
        self._start_munge()
        self._start_mariadb()
        self._daemon("slurmdbd", "slurmdbd", "-D")
        self._wait("slurmdbd", lambda: self.run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0)
        self._daemon("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._wait("slurmctld", lambda: "UP" in self.run("scontrol", "ping", check=False).stdout)
        # The jobs (children of slurmd) see this configuration at SLURM's default path: the executor
        # plugin's job step drops SLURM_CONF from the environment of its `srun`.
        self._daemon("slurmd", "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                     'mount --bind "$0" /etc/slurm && exec "$@"', str(self.dir), program("slurmd"),
                     "-D", "-f", str(self.conf), "-N", self.node)
        self._wait("slurmd", lambda: self.run("sinfo", "-h", "-n", self.node, "-o", "%T",
                                              check=False).stdout.strip() == "idle")

    def stop(self) -> None:
        """Cancel every job, stop the daemons this cluster started (newest first), remove its folder."""
        names = [name for name, _ in self.procs]
        if "slurmctld" in names:
            try:
                self.run("scancel", "--user", str(os.getuid()), check=False, timeout=10)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self.run("squeue", "-h", check=False, timeout=10).stdout.strip():
                    time.sleep(0.5)
            except (subprocess.SubprocessError, OSError):
                pass
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


    def _daemon(self, name: str, *cmd: str) -> None:
        """Start a daemon in the foreground (its pid is ours to stop); it gets SIGTERM if we die."""
        log = open(self.dir / f"{name}.out.log", "w")
        proc = subprocess.Popen([program("setpriv"), "--pdeathsig", "TERM", "--", program(cmd[0]), *cmd[1:]],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.procs.append((name, proc))

    def _wait(self, name: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        proc = dict(self.procs).get(name)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"{name} was not ready after {timeout:.0f} s\n{self.logs()}")

    def _node_line(self) -> str:
        """This machine as slurmd sees it: `NodeName=<host> CPUs=.. ... RealMemory=..`."""
        out = subprocess.run([program("slurmd"), "-C"], capture_output=True, text=True, timeout=30,
                             env=dict(self.env, SLURM_CONF="/dev/null")).stdout
        line = next(row for row in out.splitlines() if row.startswith("NodeName="))
        fields = dict(f.split("=", 1) for f in line.split())
        fields["NodeName"] = self.node
        return " ".join(f"{k}={v}" for k, v in fields.items())

    def _write_configs(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "db"):
            (d / sub).mkdir()
        gpus = [d / f"gpu{i}" for i in range(N_GPUS)]
        for gpu in gpus:
            gpu.touch()
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(f"""\
ClusterName=fersnet{self.ctld_port}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
PlugStackConfig={d}/plugstack.conf
# no cgroups: the node may be a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.dbd_port}
AccountingStoragePass={self.munge_socket}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
{self._node_line()} NodeAddr=127.0.0.1 Gres=gpu:{N_GPUS} State=UNKNOWN
PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.node} MaxTime=INFINITE State=UP
""")
        (d / "plugstack.conf").write_text("")
        (d / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File={d}/gpu[0-{N_GPUS - 1}]\n")
        dbd = d / "slurmdbd.conf"                 # read from SLURM_CONF's folder; must be private
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser=root
PidFile={d}/slurmdbd.pid
LogFile={d}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    def _start_munge(self) -> None:
        d = self.dir
        self._daemon("munged", "munged", "--foreground", f"--socket={self.munge_socket}",
                     f"--key-file={d}/munge.key", f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                     f"--seed-file={d}/munged.seed")
        self._wait("munged", self.munge_socket.exists)

    def _start_mariadb(self) -> None:
        d = self.dir
        common = ["--no-defaults", f"--datadir={d}/db", "--user=root"]
        out = subprocess.run([program("mariadb-install-db"), *common, "--auth-root-authentication-method=normal",
                              "--skip-test-db"], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
        self._daemon("mariadbd", "mariadbd", *common, f"--socket={self.db_socket}", f"--port={self.db_port}",
                     "--bind-address=127.0.0.1", "--skip-name-resolve", f"--pid-file={d}/mariadb.pid",
                     f"--log-error={d}/mariadb.log", "--innodb-buffer-pool-size=32M")
        sql = ("CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        client = [program("mariadb"), "--no-defaults", f"--socket={self.db_socket}", "-u", "root"]
        self._wait("mariadbd", lambda: subprocess.run([*client, "-e", "SELECT 1"], capture_output=True,
                                                      timeout=10).returncode == 0)
        subprocess.run([*client, "-e", sql], check=True, capture_output=True, timeout=30)


def rule_of(comment: str) -> str:
    """The Snakemake rule of a job, from the comment the SLURM executor gives it
    (`rule_<rule>_wildcards_<values>`, or `rule_<rule>` without wildcards)."""
    return re.sub(r"^rule_", "", comment).split("_wildcards_")[0]
