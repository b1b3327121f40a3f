//! The deployment files, checked by the real tools that will read them:
//!
//! * `deploy/nginx/`: `nginx -t`, then nginx in front of `serve --sandbox` on loopback, with the
//!   simulator's callback going through nginx's TLS and the callback allowlist;
//! * `docker-compose.yml`: Debian's `docker-compose` parses and interpolates it;
//! * `deploy/systemd/mpesa-gateway.service`: `systemd-analyze verify` and `security`;
//! * `Dockerfile`: its health check is a command the binary has, and it answers;
//! * `.env.example`: names every variable the binary reads.
//!
//! Needs Debian's `nginx`, `openssl` and `docker-compose` (`apt-get install -y
//! --no-install-recommends nginx openssl docker-compose`: Compose v1 only parses here, it needs
//! no Docker engine); without them the tests fail and name the package. `systemd-analyze`
//! (package `systemd`) is used where present.

#[path = "common/test_tls.rs"]
mod test_tls;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mpesa_harness::process::{ManagedProcess, ProcessSpec};

use serde_json::{Value, json};
use test_tls::{TestTls, make_tls};

const BINARY: &str = env!("CARGO_BIN_EXE_mpesa-gateway");
/// The simulator's scenario number that pays.
const SUCCESS_PHONE: &str = "254708374149";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A program on PATH (or in the sbin directories, where Debian puts nginx), or a failure that
/// names the Debian package to install.
fn require_tool(program: &str, package: &str) -> PathBuf {
    find_tool(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed; these deployment checks need it: \
             apt-get install -y {package}"
        )
    })
}

fn find_tool(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    mpesa_harness::process::free_port().unwrap()
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// TLS and nginx

/// Replaces every occurrence of `from`, which must occur: when the shipped file changes, the
/// test says which of its substitutions no longer applies instead of testing something else.
fn substitute(config: &mut String, from: &str, to: &str) {
    assert!(
        config.contains(from),
        "the shipped nginx site no longer contains `{from}`; update the substitutions in \
         tests/deployment.rs"
    );
    *config = config.replace(from, to);
}

struct SiteOptions<'a> {
    dir: &'a Path,
    tls: &'a TestTls,
    http_port: u16,
    https_port: u16,
    upstream_port: u16,
    /// The Safaricom addresses include to use in place of `/etc/nginx/snippets/…`.
    allowlist: &'a Path,
}

/// The shipped site with its `# [placeholder]` lines pointed at this test: loopback ports,
/// the test certificate, the log directory, the upstream, the allowlist file. Everything else
/// is the shipped file as it is.
fn render_site(o: &SiteOptions) -> String {
    let mut site = read("deploy/nginx/mpesa-gateway.conf");
    let dir = o.dir.display();
    substitute(
        &mut site,
        "listen 80;",
        &format!("listen 127.0.0.1:{};", o.http_port),
    );
    substitute(
        &mut site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{} ssl;", o.https_port),
    );
    // IPv6 may be missing in a CI container; the test listens on 127.0.0.1 only.
    substitute(
        &mut site,
        "listen [::]:80;",
        "# (IPv6 listen dropped by the test)",
    );
    substitute(
        &mut site,
        "listen [::]:443 ssl;",
        "# (IPv6 listen dropped by the test)",
    );
    substitute(
        &mut site,
        "server 127.0.0.1:8000;",
        &format!("server 127.0.0.1:{};", o.upstream_port),
    );
    substitute(
        &mut site,
        "/etc/letsencrypt/live/pay.example.com/fullchain.pem",
        &o.tls.cert.display().to_string(),
    );
    substitute(
        &mut site,
        "/etc/letsencrypt/live/pay.example.com/privkey.pem",
        &o.tls.key.display().to_string(),
    );
    substitute(
        &mut site,
        "include /etc/nginx/snippets/safaricom-ips.conf;",
        &format!("include {};", o.allowlist.display()),
    );
    substitute(&mut site, "/var/log/nginx/", &format!("{dir}/"));
    site
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A minimal main configuration, as Debian's nginx.conf is, around the site: everything nginx
/// writes goes to `dir`.
fn write_nginx_conf(dir: &Path, site: &str) -> PathBuf {
    let d = dir.display();
    std::fs::write(dir.join("site.conf"), site).unwrap();
    // As root, nginx's workers would run as `nobody`, which cannot enter the private tempdir.
    let user = if running_as_root() { "user root;" } else { "" };
    let conf = format!(
        "{user}\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {d}/site.conf;\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn nginx_command(nginx: &Path, dir: &Path, conf: &Path) -> Command {
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"));
    command
}

/// nginx in the foreground; stopped (SIGTERM: its master stops its workers) when dropped.
struct Nginx {
    process: ManagedProcess,
    dir: PathBuf,
    http_port: u16,
    https_port: u16,
}

impl Nginx {
    /// nginx in the foreground with the shipped site, ready when both ports accept.
    fn start(nginx: &Path, options: &SiteOptions) -> Nginx {
        std::fs::create_dir_all(options.dir).unwrap();
        let conf = write_nginx_conf(options.dir, &render_site(options));
        let error_log = options.dir.join("error.log");
        let spec = ProcessSpec::new(
            nginx,
            options.dir,
            &[
                "-p",
                &options.dir.display().to_string(),
                "-c",
                &conf.display().to_string(),
                "-e",
                &error_log.display().to_string(),
                "-g",
                "daemon off;",
            ],
        )
        .log_to(options.dir.join("nginx.stderr"));
        let mut running = Nginx {
            process: ManagedProcess::spawn(spec, options.http_port).expect("nginx starts"),
            dir: options.dir.to_owned(),
            http_port: options.http_port,
            https_port: options.https_port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = running.process.try_exited() {
                panic!("nginx exited ({status}): {}", running.error_log());
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(running.http_port) && up(running.https_port) {
                return running;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                running.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mpesa-gateway.access.log")).unwrap_or_default()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// The shipped include's `allow` lines (comments skipped).
fn allowed_addresses(include: &str) -> Vec<String> {
    include
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.strip_prefix("allow "))
        .map(|a| a.trim_end_matches(';').trim().to_owned())
        .collect()
}

#[test]
fn nginx_accepts_the_shipped_site() {
    let nginx = require_tool("nginx", "nginx");
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path());
    let conf = write_nginx_conf(
        dir.path(),
        &render_site(&SiteOptions {
            dir: dir.path(),
            tls: &tls,
            http_port: free_port(),
            https_port: free_port(),
            upstream_port: 8000,
            allowlist: &repo().join("deploy/nginx/safaricom-ips.conf"),
        }),
    );
    let out = run(nginx_command(&nginx, dir.path(), &conf).arg("-t"));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "nginx -t refused the site:\n{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
    assert!(
        !stderr.contains("[warn]") && !stderr.contains("[emerg]"),
        "nginx -t warned:\n{stderr}"
    );

    // The include is Safaricom's published list: public addresses in 196.201.212.0/22, never
    // loopback or a private range (the end-to-end test adds 127.0.0.1 to its own copy only).
    let include = read("deploy/nginx/safaricom-ips.conf");
    let addresses = allowed_addresses(&include);
    assert!(addresses.len() >= 12, "{addresses:?}");
    for a in &addresses {
        let ip: std::net::Ipv4Addr = a.parse().unwrap_or_else(|_| panic!("{a}: not an IPv4"));
        let [x, y, z, _] = ip.octets();
        assert!(
            x == 196 && y == 201 && (212..=215).contains(&z),
            "{a} is not in Safaricom's 196.201.212.0/22"
        );
    }
    assert!(
        include.contains("developer.safaricom.co.ke"),
        "the include cites its source"
    );

    // The callbacks location allows the include and denies the rest, in that order.
    let site = read("deploy/nginx/mpesa-gateway.conf");
    let callbacks = site
        .split("location /callbacks/ {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("a /callbacks/ location");
    let include_at = callbacks
        .find("include /etc/nginx/snippets/safaricom-ips.conf;")
        .expect("the callbacks location includes the Safaricom addresses");
    let deny_at = callbacks
        .find("deny all;")
        .expect("the callbacks location denies everyone else");
    assert!(
        include_at < deny_at,
        "`deny all` must follow the allow list"
    );
}

// ---------------------------------------------------------------------------------------------
// The gateway behind nginx

/// A command for the binary with a clean environment (no proxies, no stray settings) in `dir`.
fn gateway_command(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// `serve --sandbox` in `dir` on `port`, logging to `dir/gateway.log`, ready on `/health`;
/// stopped (SIGTERM) when dropped.
async fn start_gateway(dir: &Path, port: u16, env: &[(&str, String)]) -> ManagedProcess {
    let mut spec = ProcessSpec::new(Path::new(BINARY), dir, &["serve", "--sandbox"])
        .env("RUST_LOG", "warn")
        .log_to(dir.join("gateway.log"));
    for (k, v) in env {
        spec = spec.env(k, v.as_str());
    }
    ManagedProcess::gateway(spec, port)
        .await
        .expect("the gateway becomes healthy")
}

/// The Dockerfile's `HEALTHCHECK CMD [...]`, as JSON.
fn dockerfile_healthcheck() -> Vec<String> {
    let dockerfile = read("Dockerfile");
    let at = dockerfile
        .find("HEALTHCHECK")
        .expect("the Dockerfile has a HEALTHCHECK");
    let rest = &dockerfile[at..];
    let start = rest.find("CMD [").expect("HEALTHCHECK CMD in exec form") + 4;
    let end = start + rest[start..].find(']').expect("the CMD array ends") + 1;
    serde_json::from_str(&rest[start..end]).expect("the HEALTHCHECK CMD is a JSON array")
}

/// Runs the Dockerfile's health check against `base` (its `--url` pointed there).
fn run_healthcheck(base: &str) -> Output {
    let cmd = dockerfile_healthcheck();
    assert_eq!(cmd[0], "mpesa-gateway", "{cmd:?}");
    let url_at = cmd
        .iter()
        .position(|a| a == "--url")
        .expect("the health check names its --url");
    let mut args: Vec<String> = cmd[1..].to_vec();
    args[url_at] = base.to_owned();
    run(gateway_command(Path::new("/")).args(&args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_the_gateway_end_to_end() {
    let nginx_bin = require_tool("nginx", "nginx");
    daraja::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path());
    let gateway_port = free_port();
    let secret = "0123456789abcdef0123456789abcdef";

    // Front: the shipped site whose allowlist is a copy of the shipped include plus 127.0.0.1,
    // where the sandbox's simulator posts its callbacks from. Locked: the shipped include as is.
    let shipped_include = repo().join("deploy/nginx/safaricom-ips.conf");
    let loopback_include = dir.path().join("safaricom-ips-and-loopback.conf");
    std::fs::write(
        &loopback_include,
        format!(
            "{}\n# Test only: the simulator calls back from loopback.\nallow 127.0.0.1;\n",
            read("deploy/nginx/safaricom-ips.conf")
        ),
    )
    .unwrap();
    let front = Nginx::start(
        &nginx_bin,
        &SiteOptions {
            dir: &dir.path().join("nginx-front"),
            tls: &tls,
            http_port: free_port(),
            https_port: free_port(),
            upstream_port: gateway_port,
            allowlist: &loopback_include,
        },
    );
    let locked = Nginx::start(
        &nginx_bin,
        &SiteOptions {
            dir: &dir.path().join("nginx-locked"),
            tls: &tls,
            http_port: free_port(),
            https_port: free_port(),
            upstream_port: gateway_port,
            allowlist: &shipped_include,
        },
    );

    // The gateway tells Daraja (the simulator) to call back through nginx over https, trusting
    // the test CA; only the callback can complete the payment (no STK Query for an hour).
    let work = dir.path().join("gateway");
    std::fs::create_dir_all(&work).unwrap();
    let gateway = start_gateway(
        &work,
        gateway_port,
        &[
            ("MPESA_CALLBACK_URL", front.https("/")),
            ("MPESA_CALLBACK_SECRET", secret.to_owned()),
            ("SSL_CERT_FILE", tls.ca.display().to_string()),
            ("DARAJA_SIM_CALLBACK_DELAY_MS", "300".to_owned()),
            ("RECONCILE_AFTER_SECS", "3600".to_owned()),
            ("PAYMENT_EXPIRES_AFTER_SECS", "3600".to_owned()),
        ],
    )
    .await;

    let created = run(gateway_command(&work).args(["api-keys", "create", "--name", "deploy"]));
    assert!(created.status.success(), "{}", text(&created.stderr));
    let api_key = text(&created.stdout).trim().to_owned();
    assert!(!api_key.is_empty());

    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&tls.ca).unwrap()).unwrap()])
        .build()
        .unwrap();

    // Through nginx's TLS: health, then a payment that completes by its callback.
    let health = client.get(front.https("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        health.headers().contains_key("strict-transport-security"),
        "HSTS on https answers"
    );
    let response = client
        .post(front.https("/api/v1/payments"))
        .bearer_auth(&api_key)
        .json(&json!({ "phone": SUCCESS_PHONE, "amount": 10, "reference": "DEPLOY-1" }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let payment: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{payment}");
    let id = payment["id"].as_str().expect("a payment id").to_owned();
    let path = format!("/api/v1/payments/{id}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let payment = loop {
        let view: Value = client
            .get(front.https(&path))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match view["status"].as_str() {
            Some("completed") => break view,
            Some("initiated" | "pending") => {}
            other => panic!("the payment ended {other:?}: {view}"),
        }
        assert!(
            Instant::now() < deadline,
            "no completion through nginx: {view}\nnginx: {}\n{}\ngateway: {}",
            front.access_log(),
            front.error_log(),
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        payment["mpesa_receipt_number"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{payment}"
    );
    // The callback came through nginx (over TLS, from an allowed address), and nginx's log
    // kept the secret path out.
    let access = front.access_log();
    assert!(
        access
            .lines()
            .any(|l| l.contains("\"POST /callbacks/[redacted]/stk HTTP/1.1\" 200")),
        "no callback through nginx in its access log:\n{access}"
    );
    assert!(!access.contains(secret), "the callback secret was logged");

    // The Dockerfile's health check is a real command, and it passes against a live gateway.
    let check = run_healthcheck(&gateway.base);
    assert!(
        check.status.success(),
        "{:?}: {}",
        dockerfile_healthcheck(),
        text(&check.stderr)
    );

    // Plain http moves to https, path and query kept.
    let redirect = client
        .get(front.http(&format!("{path}?x=1")))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(redirect.status().as_u16(), 301 | 308),
        "{}",
        redirect.status()
    );
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://") && location.ends_with(&format!("{path}?x=1")),
        "{location}"
    );

    // An oversize body is refused by nginx itself (its own error page), before the gateway.
    let oversize = client
        .post(front.https("/api/v1/payments"))
        .bearer_auth(&api_key)
        .header("content-type", "application/json")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), 413);
    assert!(oversize.text().await.unwrap().contains("nginx"));

    // The built-in simulator answers on the gateway itself but is never published.
    let direct = client
        .get(format!("{}/sandbox/simulator/requests", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200, "the simulator is mounted");
    let published = client
        .get(front.https("/sandbox/simulator/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 404);

    // With the shipped allowlist, a callback from an address not on it (loopback) is refused
    // before the gateway, even with the right secret; other routes still pass.
    let callback = json!({ "Body": { "stkCallback": {
        "MerchantRequestID": "1", "CheckoutRequestID": payment["checkout_request_id"],
        "ResultCode": 1032, "ResultDesc": "Request cancelled by user" } } });
    let refused = client
        .post(locked.https(&format!("/callbacks/{secret}/stk")))
        .json(&callback)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let ok = client.get(locked.https("/health")).send().await.unwrap();
    assert_eq!(ok.status(), 200, "the locked front proxies other routes");
    let unchanged: Value = client
        .get(front.https(&path))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["status"], "completed");
    assert!(
        !locked.access_log().contains(secret),
        "the refused secret path was logged"
    );
}

/// `mpesa-gateway healthcheck` exits 0 only for a healthy answer: not for a 503 (the database
/// is down) and not when nothing listens.
#[test]
fn healthcheck_fails_on_503_and_on_no_answer() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            assert!(request.starts_with(b"GET /health "), "{:?}", text(&request));
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                  content-length: 24\r\nconnection: close\r\n\r\n{\"status\":\"unhealthy\"}  ",
            );
        }
    });
    let unhealthy = run_healthcheck(&format!("http://127.0.0.1:{port}"));
    assert_eq!(
        unhealthy.status.code(),
        Some(1),
        "{}",
        text(&unhealthy.stderr)
    );

    let nothing = run_healthcheck(&format!("http://127.0.0.1:{}", free_port()));
    assert!(!nothing.status.success());
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

#[test]
fn dockerfile_builds_the_gateway_and_runs_it_unprivileged() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let has = |line: &str| instructions.contains(&line);
    assert!(has("FROM rust:1-bookworm AS builder"), "{dockerfile}");
    assert!(dockerfile.contains("cargo build --release --locked -p mpesa-gateway"));
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.last().map(|l| l.trim()),
        Some("FROM debian:bookworm-slim"),
        "the final stage"
    );
    let final_stage = &dockerfile[dockerfile.rfind("FROM ").unwrap()..];
    let user = final_stage
        .lines()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as root: {user}");
    assert!(has("WORKDIR /var/lib/mpesa-gateway"));
    assert!(final_stage.contains("VOLUME [\"/var/lib/mpesa-gateway\"]"));
    assert!(has("EXPOSE 8000"));
    assert!(has("ENV GATEWAY_LISTEN=0.0.0.0:8000"));
    assert!(final_stage.contains("--no-install-recommends ca-certificates"));

    // ENTRYPOINT + CMD is a command line the binary accepts. (Instructions start their line;
    // the HEALTHCHECK's own indented `CMD` continues another.)
    let exec_form = |prefix: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .next_back()
            .unwrap_or_else(|| panic!("no {prefix}"));
        serde_json::from_str(line).expect("exec form")
    };
    let mut argv = exec_form("ENTRYPOINT ");
    argv.extend(exec_form("CMD "));
    assert_eq!(argv[0], "mpesa-gateway");
    let help = run(gateway_command(Path::new("/"))
        .args(&argv[1..])
        .arg("--help"));
    assert!(
        help.status.success(),
        "`{}` is not a command: {}",
        argv.join(" "),
        text(&help.stderr)
    );

    // The final stage installs nothing but CA certificates: the binary may only link what
    // debian:bookworm-slim has (glibc and libgcc; SQLite is compiled in, TLS is rustls).
    if let Some(ldd) = find_tool("ldd") {
        let out = run(Command::new(ldd).arg(BINARY));
        assert!(out.status.success(), "ldd: {}", text(&out.stderr));
        let in_slim = [
            "linux-vdso.so",
            "libc.so",
            "libm.so",
            "libgcc_s.so",
            "libpthread.so",
            "libdl.so",
            "librt.so",
            "ld-linux",
        ];
        for line in text(&out.stdout).lines().map(str::trim) {
            let library = line.split_whitespace().next().unwrap_or("");
            let library = library.rsplit('/').next().unwrap_or(library);
            assert!(
                in_slim.iter().any(|l| library.starts_with(l)),
                "the binary links {line}, which debian:bookworm-slim lacks: add its package to \
                 the Dockerfile's final stage"
            );
        }
    }

    // Secrets and build output stay out of the build context.
    let dockerignore = read(".dockerignore");
    let ignore: Vec<&str> = dockerignore.lines().map(str::trim).collect();
    for entry in [".env", "target", ".git", "*.db"] {
        assert!(ignore.contains(&entry), ".dockerignore lacks {entry}");
    }
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

/// `docker-compose config`'s normalised YAML, cut into its services: name -> the lines of its block.
fn compose_services(yaml: &str) -> BTreeMap<String, Vec<String>> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut services = BTreeMap::new();
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim_end() != "services:")
        .skip(1);
    let mut current: Option<(String, Vec<String>)> = None;
    let mut service_indent = None;
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            continue;
        }
        let i = indent(line);
        if i == 0 {
            break;
        }
        let si = *service_indent.get_or_insert(i);
        if i == si {
            if let Some((name, block)) = current.take() {
                services.insert(name, block);
            }
            current = Some((line.trim().trim_end_matches(':').to_owned(), Vec::new()));
        } else if let Some((_, block)) = current.as_mut() {
            block.push(line.to_owned());
        }
    }
    if let Some((name, block)) = current {
        services.insert(name, block);
    }
    services
}

/// The `- item` lines right under `key:` in a service block.
fn compose_list(block: &[String], key: &str) -> Vec<String> {
    let Some(at) = block.iter().position(|l| l.trim() == format!("{key}:")) else {
        return Vec::new();
    };
    block[at + 1..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("- "))
        .map(|l| {
            l[2..]
                .trim()
                .trim_matches('\'')
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

fn docker_compose(compose: &Path, dir: &Path, args: &[&str]) -> Output {
    run(Command::new(compose)
        .current_dir(dir)
        .env_remove("COMPOSE_PROFILES")
        .env_remove("COMPOSE_FILE")
        .args(["-f", "docker-compose.yml"])
        .args(args))
}

#[test]
fn compose_file_is_valid_and_every_service_has_a_healthcheck() {
    let compose = require_tool("docker-compose", "--no-install-recommends docker-compose");
    // A project directory like a deployment's: the compose file and `.env` from the example
    // (the build context `.` only has to exist to be validated).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("docker-compose.yml"),
        dir.path().join("docker-compose.yml"),
    )
    .unwrap();
    std::fs::copy(repo().join(".env.example"), dir.path().join(".env")).unwrap();

    for args in [
        &["config", "-q"][..],
        &["--profile", "postgres", "config", "-q"][..],
    ] {
        let out = docker_compose(&compose, dir.path(), args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}:\n{}",
            text(&out.stderr)
        );
    }
    let out = docker_compose(&compose, dir.path(), &["config", "--profiles"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let profiles: BTreeSet<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        profiles,
        BTreeSet::from(["mariadb".to_owned(), "postgres".to_owned()])
    );

    // Both profiles enabled: Compose v2 prints only the enabled ones.
    let out = docker_compose(
        &compose,
        dir.path(),
        &["--profile", "mariadb", "--profile", "postgres", "config"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let services = compose_services(&yaml);
    assert_eq!(
        services.keys().map(String::as_str).collect::<Vec<_>>(),
        ["gateway", "gateway-postgres", "mariadb", "postgres"],
        "{yaml}"
    );
    for (name, block) in &services {
        assert!(
            block.iter().any(|l| l.trim() == "healthcheck:"),
            "{name} has no healthcheck"
        );
        assert!(
            !compose_list(block, "test").is_empty(),
            "{name}: a healthcheck without a test"
        );
    }

    // Two whole stacks, one per profile, each gateway waiting for its database to be healthy
    // and using it; the gateway's check is the Dockerfile's.
    let healthcheck = dockerfile_healthcheck();
    for (gateway, database, profile, scheme) in [
        ("gateway", "mariadb", "mariadb", "mysql://"),
        ("gateway-postgres", "postgres", "postgres", "postgres://"),
    ] {
        let block = &services[gateway];
        assert_eq!(compose_list(block, "profiles"), [profile], "{gateway}");
        assert_eq!(compose_list(&services[database], "profiles"), [profile]);
        let joined = block.join("\n");
        assert!(
            joined.contains(&format!("{database}:\n        condition: service_healthy"))
                || joined.contains(&format!("{database}:\n      condition: service_healthy")),
            "{gateway} waits for {database}:\n{joined}"
        );
        assert!(
            joined.contains(&format!("DATABASE_URL: {scheme}mpesa:change-me-"))
                && joined.contains(&format!("@{database}:")),
            "{gateway} uses {database}:\n{joined}"
        );
        assert!(joined.contains("GATEWAY_LISTEN: 0.0.0.0:8000"));
        let test = compose_list(block, "test");
        assert_eq!(test[0], "CMD");
        assert_eq!(test[1..], healthcheck[..], "{gateway}'s healthcheck");
    }

    // A missing database password is an error that names it, not an empty password.
    let env = read(".env.example")
        .lines()
        .filter(|l| !l.starts_with("MARIADB_PASSWORD="))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let out = docker_compose(&compose, dir.path(), &["config", "-q"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("MARIADB_PASSWORD"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// systemd

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/mpesa-gateway.service");
    for directive in [
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "StateDirectory=mpesa-gateway",
        "WorkingDirectory=/var/lib/mpesa-gateway",
        "EnvironmentFile=/etc/mpesa-gateway/env",
        "User=mpesa-gateway",
        "ExecStart=/usr/local/bin/mpesa-gateway serve",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == directive),
            "the unit lacks {directive}"
        );
    }

    let Some(analyze) = find_tool("systemd-analyze") else {
        eprintln!(
            "note: systemd-analyze is not installed (package systemd); the unit was not verified"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The unit as shipped, but starting the binary that exists here.
    let copy = dir.path().join("mpesa-gateway.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/mpesa-gateway serve",
            &format!("ExecStart={BINARY} serve"),
        ),
    )
    .unwrap();
    let verify = |path: &Path| {
        run(Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(path))
    };
    let out = verify(&copy);
    let stderr = text(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("mpesa-gateway"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
    // The check above can fail: a bad value in the same unit is reported.
    let broken = dir.path().join("broken").join("mpesa-gateway.service");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(
        &broken,
        std::fs::read_to_string(&copy)
            .unwrap()
            .replace("ProtectSystem=strict", "ProtectSystem=very"),
    )
    .unwrap();
    let out = verify(&broken);
    assert!(
        text(&out.stderr).contains("mpesa-gateway.service:") || !out.status.success(),
        "systemd-analyze did not notice a bad value: {}",
        text(&out.stderr)
    );

    // systemd's own exposure score (0 = locked down, 10 = none): "OK" is below 2.5.
    let out = run(Command::new(&analyze)
        .args(["security", "--no-pager", "--offline=yes"])
        .arg(&copy));
    let report = text(&out.stdout) + &text(&out.stderr);
    match report.lines().find_map(|l| {
        l.split("Overall exposure level for mpesa-gateway.service: ")
            .nth(1)
    }) {
        Some(rest) => {
            let score: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{rest}"));
            assert!(score < 2.5, "exposure {score}:\n{report}");
        }
        None => eprintln!("note: this systemd-analyze cannot score units offline:\n{report}"),
    }
}

// ---------------------------------------------------------------------------------------------
// .env.example

/// Every environment variable the binary reads: the SCREAMING_SNAKE string literals of the
/// gateway's own source, which are all variable names (a new constant of that shape that is
/// not one fails here: give it another shape), and the simulator's
/// `DARAJA_SIM_*` settings that `serve --sandbox` and `sandbox` read; `RUST_LOG` through
/// tracing's `EnvFilter`.
fn variables_read_by_the_binary() -> BTreeSet<String> {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    fn literals(source: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        let mut i = 0;
        while let Some(open) = source[i..].find('"').map(|o| i + o) {
            let Some(close) = source[open + 1..].find('"').map(|c| open + 1 + c) else {
                break;
            };
            let word = &source[open + 1..close];
            let is_name = word.len() >= 3
                && word.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
                && word.contains('_')
                && word
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if is_name {
                found.push((open, word.to_owned()));
                i = close + 1;
            } else {
                // Not a name: move past the opening quote only, so a closing quote is not
                // taken for the start of a literal.
                i = open + 1;
            }
        }
        found
    }
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    rust_files(&repo().join("crates/gateway/src"), &mut files);
    for file in &files {
        // Test modules included: their names are variables too, and no heuristic can then
        // hide a real read behind a `#[cfg(test)]`.
        let code = std::fs::read_to_string(file).unwrap();
        let code = code.as_str();
        for (at, name) in literals(code) {
            // `env!("CARGO_PKG_VERSION")` is read when compiling, not at run time.
            if code[..at].ends_with("env!(") {
                continue;
            }
            names.insert(name);
        }
        if code.contains("from_default_env") {
            names.insert("RUST_LOG".to_owned());
        }
    }
    let sim = read("crates/daraja-sim/src/config.rs");
    for (_, name) in literals(&sim) {
        if name.starts_with("DARAJA_SIM_") {
            names.insert(name);
        }
    }
    names
}

/// The names `.env.example` assigns, in effect or commented out (`NAME=…`, `# NAME=…`).
fn documented_variables(example: &str) -> BTreeSet<String> {
    example
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix('#').map(str::trim_start).unwrap_or(l);
            let (name, _) = l.split_once('=')?;
            (!name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
            .then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn env_example_documents_every_variable_the_binary_reads() {
    let read_by_binary = variables_read_by_the_binary();
    // The extraction finds what it must (it is not silently finding nothing).
    for known in [
        "MPESA_CONSUMER_KEY",
        "DATABASE_URL",
        "GATEWAY_LISTEN",
        "OUTBOX_LEASE",
        "MPESA_GATEWAY_URL",
        "DARAJA_SIM_CALLBACK_DELAY_MS",
        "RUST_LOG",
    ] {
        assert!(
            read_by_binary.contains(known),
            "{known} not found in the source"
        );
    }
    assert!(!read_by_binary.contains("CARGO_PKG_VERSION"));

    let example = read(".env.example");
    let documented = documented_variables(&example);
    let missing: Vec<&String> = read_by_binary.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        ".env.example does not document {missing:?} (add `# NAME=default` with a comment)"
    );

    // And nothing stale: a name the binary does not read is one docker-compose.yml uses.
    let compose = read("docker-compose.yml");
    for name in documented.difference(&read_by_binary) {
        assert!(
            compose.contains(&format!("${{{name}")) || name == "COMPOSE_PROFILES",
            "{name} is in .env.example but neither the binary nor docker-compose.yml reads it"
        );
    }

    // No secret values: the only ones set are placeholders or Safaricom's public sandbox values.
    for line in example.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.contains("SECRET") || name.contains("PASSWORD") || name.contains("TOKEN") {
            assert!(
                value.is_empty() || value.starts_with("replace-") || value.starts_with("change-me"),
                "{name} has a value that looks real: {value}"
            );
        }
    }
}
