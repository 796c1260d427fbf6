//! A Postgres server of a test's own: `initdb` into a scratch directory, the server on a free
//! loopback port as a child of the test (trust authentication, replication allowed), and
//! streaming replicas of it made with `pg_basebackup -R`. Only its own postmaster's PID is ever
//! signalled; dropping it kills that one and removes the directory.
//!
//! Postgres refuses to run as root: when the test is root, every server binary runs as the
//! `postgres` OS user (as `scripts/services.sh` does), and the scratch directory is given to it.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Postgres server (a primary, or a hot standby of one).
pub struct TempPostgres {
    pub port: u16,
    /// The scratch directory: `data/` (the cluster), `server.log`, the socket.
    pub dir: PathBuf,
    postmaster: Option<Child>,
    /// The OS user the server runs as, when the test runs as root.
    owner: Option<(u32, u32)>,
}

impl TempPostgres {
    /// A new cluster, started with WAL for streaming replicas (`wal_level=replica`).
    pub fn start() -> Self {
        let mut server = Self::scratch("primary");
        let data = server.data();
        server.run(
            Command::new(bin("initdb"))
                .args([
                    "-D",
                    path(&data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                ])
                .args(["--no-sync"]),
            "initdb",
        );
        // initdb's trust rules cover replication from loopback already; said again here, since
        // the replicas depend on it.
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("pg_hba.conf is readable");
        rules.push_str("\nhost replication all 127.0.0.1/32 trust\n");
        std::fs::write(&hba, rules).expect("pg_hba.conf is writable");
        // WAL kept for a replica that was down a while (no slot holds it for them).
        server.spawn(&[
            "-c",
            "wal_level=replica",
            "-c",
            "max_wal_senders=5",
            "-c",
            "wal_keep_size=256MB",
        ]);
        server
    }

    /// A streaming replica of this server (`pg_basebackup -R`), started as a hot standby.
    pub fn replica(&self) -> Self {
        let mut replica = Self::scratch("replica");
        let data = replica.data();
        let port = self.port.to_string();
        replica.run(
            Command::new(bin("pg_basebackup")).args([
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-D",
                path(&data),
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
            ]),
            "pg_basebackup",
        );
        replica.spawn(&["-c", "hot_standby=on"]);
        replica
    }

    /// The URL of database `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// SIGKILL to the postmaster (its backends end on their own once it is gone), reaped.
    pub fn kill9(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            let _ = postmaster.kill();
            let _ = postmaster.wait();
        }
    }

    /// Starts the server again on its data directory and port (after [`TempPostgres::kill9`]: it
    /// recovers from its WAL first, as after a crash).
    pub fn restart(&mut self, settings: &[&str]) {
        assert!(self.postmaster.is_none(), "restarting a server that runs");
        self.spawn(settings);
    }

    /// An empty scratch directory, owned by the user the server will run as.
    fn scratch(name: &str) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("commerce-pg-{name}-{}", &run[..12]));
        std::fs::create_dir_all(&dir).expect("the scratch directory is created");
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("the scratch directory is given to the postgres user");
        }
        Self {
            port: free_port(),
            dir,
            postmaster: None,
            owner,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a server tool to completion as the server's user; its output goes to `<tool>.log`.
    fn run(&self, command: &mut Command, tool: &str) {
        let log = self.dir.join(format!("{tool}.log"));
        let file = std::fs::File::create(&log).expect("the tool's log is created");
        let status = self
            .as_server_user(command)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log is cloned"))
            .stderr(file)
            .status()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            status.success(),
            "{tool} failed ({status}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Starts the postmaster (`postgres` itself, so that the child's PID is the postmaster's)
    /// and waits until it accepts connections.
    fn spawn(&mut self, settings: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("the server log opens");
        let port = self.port.to_string();
        let mut command = Command::new(bin("postgres"));
        command
            .args(["-D", path(&self.data()), "-p", &port, "-k", path(&self.dir)])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=60",
            ])
            // A test's server: nothing to lose on a power cut, and little memory to share.
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .args(settings)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log is cloned"))
            .stderr(log);
        self.postmaster = Some(
            self.as_server_user(&mut command)
                .spawn()
                .expect("postgres starts"),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(status) = self
                .postmaster
                .as_mut()
                .and_then(|p| p.try_wait().ok().flatten())
            {
                panic!(
                    "postgres exited ({status}) while starting; see {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {START_TIMEOUT:?}; see {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        self.dir.join("server.log").display().to_string()
    }

    fn as_server_user<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid).current_dir(&self.dir);
        }
        command
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("postgres: its data and log kept in {}", self.dir.display());
            return;
        }
        // The backends leave once they notice the postmaster is gone; until then they may still
        // write in the directory.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir_all(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Postgres's server binaries: `pg_config --bindir`, else Debian's place for version 15.
fn bin(name: &str) -> PathBuf {
    static BINDIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINDIR
        .get_or_init(|| {
            Command::new("pg_config")
                .arg("--bindir")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
                .filter(|dir| dir.join("initdb").exists())
                .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
        })
        .join(name)
}

/// The `postgres` OS user's uid and gid when the test runs as root (Postgres refuses root),
/// else `None`: the server runs as the test's user.
fn server_user() -> Option<(u32, u32)> {
    let id = |flag: &str, user: Option<&str>| -> Option<u32> {
        let output = Command::new("id").arg(flag).args(user).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    if id("-u", None)? != 0 {
        return None;
    }
    let uid = id("-u", Some("postgres")).expect("running as root needs a `postgres` OS user");
    let gid = id("-g", Some("postgres")).expect("the `postgres` OS user has a group");
    Some((uid, gid))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn path(path: &Path) -> &str {
    path.to_str().expect("the scratch path is UTF-8")
}
