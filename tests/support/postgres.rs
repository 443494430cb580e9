//! A real PostgreSQL server for the tests that need one: Debian's
//! `postgresql` package (`./test.sh` installs it), its `initdb` and
//! `pg_ctl` run in a fresh temporary directory on a free loopback port. As
//! root (initdb refuses root), they run as the `postgres` user the package
//! made. It fails loudly when it cannot start, and is stopped and removed
//! when dropped, whatever the test did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory of `initdb` and `pg_ctl`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian puts neither on `PATH`), else `PATH`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return dir.into();
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = newest {
        return bin;
    }
    let on_path = Command::new("sh").args(["-c", "command -v initdb"]).output().ok().filter(|o| o.status.success());
    match on_path.and_then(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).parent().map(Path::to_path_buf)) {
        Some(dir) => dir,
        None => panic!(
            "PostgreSQL's initdb was found neither in /usr/lib/postgresql/*/bin nor on PATH: \
             apt-get install postgresql (./test.sh installs it), or set PG_BIN"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Makes a database cluster and starts its server; the tests connect as
    /// `postgres`, without a password, to the `postgres` database.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory for PostgreSQL");
        let as_postgres = is_root();
        if as_postgres {
            let chown = Command::new("chown").arg("postgres:").arg(dir.path()).output().expect("chown");
            assert!(chown.status.success(), "chown postgres: {}", String::from_utf8_lossy(&chown.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { dir, bin, port, as_postgres };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when we are root),
    /// panicking with its output and the server's log when it fails.
    fn run(&self, program: &str, args: &[&str], what: &str) -> Output {
        let output =
            self.command(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program} ({what}): {e}"));
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            panic!(
                "PostgreSQL: {what} failed ({}):\n{}{}\n--- server log ---\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }

    /// One of its programs, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts (or starts again) the server, waiting until it accepts
    /// connections. Durability is off: the tests need none.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "-t", "30", "-o", &options, "start"],
            "pg_ctl start",
        );
    }

    /// Stops the server (its clients' connections are closed); the data
    /// stays for [`Postgres::start_server`].
    pub fn stop_server(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"], "pg_ctl stop");
    }

    /// A `DATABASE_URL` for it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Whatever state it is in; the directory goes with `self.dir`.
        let _ = self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
    }
}
