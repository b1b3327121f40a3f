//! `crash` on SQLite, first round: every callback answered 200 was on the disk before the answer.
//!
//! A `kill -9` cannot show an answer sent before the fsync (the page cache outlives a killed
//! process; only a power cut loses it), so this round watches the system calls instead: the
//! gateway runs under `strace`, callbacks are posted one at a time (each waits for the previous
//! answer), and for every `200` written to a socket there must be an `fdatasync`/`fsync` of the
//! `-wal` file that began after the last write to the WAL before that answer and ended before
//! it. Today SQLite itself syncs the WAL inside `COMMIT` (`synchronous = FULL`); the round
//! catches any change that answers earlier (`NORMAL`, an fsync of our own that is not awaited,
//! an answer moved before the commit).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use mpesa_harness::callbacks_to_send::stk_success;
use mpesa_harness::database::{Backend, Db, TestDatabase, seed_pending_payments};
use mpesa_harness::process::{ManagedProcess, free_port};

use crate::common::*;
use crate::ensure_guarantee;

const CALLBACKS: usize = 40;

/// One system call, as strace printed it (`-f -ttt -T -y`): when it began and ended.
#[derive(Debug, Clone)]
struct Call {
    kind: Kind,
    start: f64,
    end: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WalWrite,
    WalSync,
    Accepted,
}

pub async fn run(gateway: &Path) -> anyhow::Result<()> {
    section("crash on sqlite, round 0: every 200 after its WAL is on disk (strace)");
    let strace = Path::new("/usr/bin/strace");
    if !strace.exists() {
        bail!("strace is needed for this round (apt-get install strace)");
    }
    let dir = run_dir("wal-order")?;
    let database = TestDatabase::create(Backend::Sqlite, "mpesa_proof_wal", Some(&dir)).await?;
    let log = dir.join("strace.log");
    let log_path = log.display().to_string();
    // strace starts the gateway as its child (the process's pid is strace's).
    let spec = gateway_spec(gateway, &dir, database.url(), "gateway.log").under(&[
        "/usr/bin/strace",
        "-f",
        "-ttt",
        "-T",
        "-y",
        "-s",
        "400",
        "-e",
        "trace=pwrite64,write,writev,sendto,sendmsg,fdatasync,fsync",
        "-o",
        &log_path,
        "--",
    ]);
    let mut process = ManagedProcess::gateway(spec, free_port()?).await?;
    let db = Db::connect(database.url()).await?;
    seed_pending_payments(&db, 0..CALLBACKS, None).await?;
    let client = reqwest::Client::new();
    let url = format!("{}{}", process.base, callback_path());
    for i in 0..CALLBACKS {
        let answer = client
            .post(&url)
            .header("content-type", "application/json")
            .body(stk_success(i))
            .send()
            .await?;
        if answer.status().as_u16() != 200 {
            bail!("callback {i} answered {}", answer.status());
        }
    }
    db.close().await;
    stop_traced(&mut process);
    let text = std::fs::read_to_string(&log).context("reading strace's log")?;
    let calls = parse(&text);
    let accepted: Vec<&Call> = calls.iter().filter(|c| c.kind == Kind::Accepted).collect();
    let syncs = calls.iter().filter(|c| c.kind == Kind::WalSync).count();
    let writes = calls.iter().filter(|c| c.kind == Kind::WalWrite).count();
    figure(
        "answers 200 / WAL writes / WAL syncs seen",
        format!("{} / {writes} / {syncs}", accepted.len()),
    );
    ensure_guarantee!(
        accepted.len() >= CALLBACKS && writes > 0,
        "strace showed {} answers and {writes} WAL writes for {CALLBACKS} callbacks: cannot judge",
        accepted.len()
    );
    let mut early = Vec::new();
    for answer in &accepted {
        let last_write = calls
            .iter()
            .filter(|c| c.kind == Kind::WalWrite && c.end <= answer.start)
            .map(|c| c.end)
            .fold(f64::MIN, f64::max);
        let synced = calls
            .iter()
            .any(|c| c.kind == Kind::WalSync && c.start >= last_write && c.end <= answer.start);
        if !synced {
            early.push(answer.start);
        }
    }
    ensure_guarantee!(
        early.is_empty(),
        "{} of {} answers 200 were written before the WAL holding their callback was synced — guarantee 1 (power loss)",
        early.len(),
        accepted.len()
    );
    drop(process);
    drop(database);
    let _ = std::fs::remove_dir_all(&dir);
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!("  PASS");
    Ok(())
}

/// Stops the gateway that strace runs (SIGTERM to strace alone would only detach it), then
/// strace, which exits with it.
fn stop_traced(strace: &mut ManagedProcess) {
    if let Some(pid) = strace.pid() {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", child])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while Path::new(&format!("/proc/{child}")).exists()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    strace.terminate();
}

/// Reads strace's lines (`PID TIME call(args) = result <duration>`), joining calls that another
/// thread interrupted (`<unfinished ...>` … `<... call resumed>`).
fn parse(text: &str) -> Vec<Call> {
    let mut open: std::collections::HashMap<String, (f64, String)> = Default::default();
    let mut calls = Vec::new();
    for line in text.lines() {
        // `PID   TIME call…` (strace pads the PID with spaces).
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((time, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        let (start, body) = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            open.insert(pid.to_owned(), (time, head.to_owned()));
            continue;
        } else if rest.starts_with("<... ") {
            match open.remove(pid) {
                Some((start, head)) => (start, format!("{head}{rest}")),
                None => continue,
            }
        } else {
            (time, rest.to_owned())
        };
        let duration = body
            .rsplit_once('<')
            .and_then(|(_, d)| d.strip_suffix('>'))
            .and_then(|d| d.parse::<f64>().ok())
            .unwrap_or(0.0);
        let end = if rest.starts_with("<... ") {
            time.max(start + duration)
        } else {
            start + duration
        };
        let failed = body.contains(" = -1 ");
        let kind = if (body.starts_with("pwrite64(") || body.starts_with("write("))
            && body.contains("-wal>")
            && !failed
        {
            Kind::WalWrite
        } else if (body.starts_with("fdatasync(") || body.starts_with("fsync("))
            && body.contains("-wal>")
            && !failed
        {
            Kind::WalSync
        } else if (body.starts_with("write") || body.starts_with("send"))
            && (body.contains("<socket:[") || body.contains("<TCP"))
            && body.contains("ResultCode")
            && body.contains(":0,")
        {
            Kind::Accepted
        } else {
            continue;
        };
        calls.push(Call { kind, start, end });
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_and_interrupted_calls() {
        let log = r#"101   1.000000 pwrite64(7</tmp/d/db.sqlite-wal>, "\0\0", 4120, 32) = 4120 <0.000010>
102 1.100000 fdatasync(9</tmp/d/db.sqlite-wal> <unfinished ...>
101 1.150000 pwrite64(7</tmp/d/db.sqlite-wal>, "x", 4120, 4152) = 4120 <0.000010>
102 1.200000 <... fdatasync resumed>) = 0 <0.100000>
103 1.300000 writev(12<TCP:[127.0.0.1:8000->127.0.0.1:5000]>, [{iov_base="HTTP/1.1 200 OK\r\n", iov_len=17}, {iov_base="{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}", iov_len=40}], 2) = 57 <0.000020>
"#;
        let calls = parse(log);
        let kinds: Vec<Kind> = calls.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::WalWrite,
                Kind::WalWrite,
                Kind::WalSync,
                Kind::Accepted
            ]
        );
        let sync = &calls[2];
        assert!((sync.start - 1.1).abs() < 1e-9 && (sync.end - 1.2).abs() < 1e-9);
    }
}
