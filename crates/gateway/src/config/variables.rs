//! Every environment variable, in one table: [`VARIABLES`].
//!
//! The table drives everything a variable has besides its parsing:
//! * reading: its aliases, the default used when it is unset (parsed like a set value, so the
//!   documented default is the real one), and the name an error message gives;
//! * `config check` and the dashboard's settings page: one row per entry with a `show`, masked
//!   as its `secret` says ([`super::Config::describe`]);
//! * `.env.example` and the configuration tables of README.md, which are generated from it
//!   ([`super::docs`]; a test fails when the committed files differ).
//!
//! **To add a variable**:
//! 1. add an entry below, in its section: `Var { ..var("NAME", Section::X, "what it does") }`
//!    with `aliases`, `when_unset` (`WhenUnset::Value("30s")` for a default, or
//!    `WhenUnset::Means("off")` for what happens without it), `secret` and `show` (how
//!    `config check` shows the effective value) as they apply;
//! 2. read it in its section's module (`config/<section>.rs`) with the [`super::reader::Reader`]
//!    (`r.read_or_default("NAME", parse::from_str("seconds"))?`, `r.string("NAME")`, …) and put
//!    the value in the section's settings;
//! 3. run `cargo test -p mpesa-gateway --lib config::docs::tests::write -- --ignored` to
//!    regenerate `.env.example` and the README's tables, and commit them (a test fails until
//!    they match the table).
//!
//! A variable the gateway reads elsewhere (a `clap` argument, the simulator, docker compose) is an
//! entry too, with `read_by: ReadBy::Other`, so that `.env.example` lists it.

use secrecy::ExposeSecret as _;

use super::Config;

/// One environment variable.
pub struct Var {
    pub name: &'static str,
    /// Other names accepted for it (the first one set wins, the name itself first).
    pub aliases: &'static [&'static str],
    pub section: Section,
    /// One or a few sentences: the README's "meaning" column and the comment in `.env.example`.
    pub help: &'static str,
    pub when_unset: WhenUnset,
    pub secret: Secret,
    /// `.env.example`: values shown commented out (`# NAME=value`); by default the default.
    pub examples: &'static [&'static str],
    /// `.env.example`: a value in effect (`NAME=value`) rather than commented out.
    pub active: Option<&'static str>,
    /// The effective value for `config check` (`None` from the function: not set); `None` here
    /// when another row shows it (the `DB_*` parts of `DATABASE_URL`) or it is not the
    /// configuration's (`ReadBy::Other`).
    pub show: Option<fn(&Config) -> Option<String>>,
    pub read_by: ReadBy,
}

/// What an unset (or blank) variable means.
#[derive(Debug, Clone, Copy)]
pub enum WhenUnset {
    /// This value, parsed like a set one.
    Value(&'static str),
    /// No fixed value: what happens instead ("off", "the shortcode"); empty for nothing to say.
    Means(&'static str),
}

/// How `config check` shows the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    No,
    /// Only its length.
    Yes,
    /// A URL whose password and query (tokens) are masked.
    InUrl,
    /// Its first four characters: it identifies rather than authenticates (a consumer key).
    Identifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBy {
    /// [`super::Config::from_source`].
    Config,
    /// A command's own argument, the simulator, docker compose or the log filter.
    Other,
}

/// Where a variable is documented: a heading of `.env.example`, a table of README.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Daraja,
    Payments,
    Server,
    Database,
    Telegram,
    Email,
    Webhooks,
    Outbox,
    Cli,
    Simulator,
    Compose,
}

impl Section {
    pub const ALL: [Section; 11] = [
        Section::Daraja,
        Section::Payments,
        Section::Server,
        Section::Database,
        Section::Telegram,
        Section::Email,
        Section::Webhooks,
        Section::Outbox,
        Section::Cli,
        Section::Simulator,
        Section::Compose,
    ];

    /// The name README.md's table markers use (`<!-- config-table: daraja payments -->`).
    pub fn key(self) -> &'static str {
        match self {
            Section::Daraja => "daraja",
            Section::Payments => "payments",
            Section::Server => "server",
            Section::Database => "database",
            Section::Telegram => "telegram",
            Section::Email => "email",
            Section::Webhooks => "webhooks",
            Section::Outbox => "outbox",
            Section::Cli => "cli",
            Section::Simulator => "simulator",
            Section::Compose => "compose",
        }
    }

    /// `.env.example`'s heading.
    pub fn title(self) -> &'static str {
        match self {
            Section::Daraja => "Daraja (Safaricom)",
            Section::Payments => "Payments",
            Section::Server => "Server and logs",
            Section::Database => "Database",
            Section::Telegram => "Telegram",
            Section::Email => "Email",
            Section::Webhooks => "Webhooks to your application",
            Section::Outbox => "Outbox (email, Telegram, webhooks)",
            Section::Cli => "Command-line tools",
            Section::Simulator => "The built-in simulator (`serve --sandbox`, `sandbox`)",
            Section::Compose => "docker-compose.yml only (not read by the binary)",
        }
    }
}

/// An entry with only its name, section and help: the start of every entry below.
const fn var(name: &'static str, section: Section, help: &'static str) -> Var {
    Var {
        name,
        aliases: &[],
        section,
        help,
        when_unset: WhenUnset::Means(""),
        secret: Secret::No,
        examples: &[],
        active: None,
        show: None,
        read_by: ReadBy::Config,
    }
}

/// The variable named `name` (not an alias).
pub fn find(name: &str) -> Option<&'static Var> {
    VARIABLES.iter().find(|v| v.name == name)
}

/// `30s`, `1.5s`, `500ms`: how `config check` shows a duration.
fn duration(d: std::time::Duration) -> String {
    format!("{d:?}")
}

use Section::*;

/// Every variable, in the order of `.env.example` and `config check`. See the module's comment
/// for how to add one.
pub static VARIABLES: &[Var] = &[
    // --- Daraja -------------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Value("sandbox"),
        active: Some("sandbox"),
        show: Some(|c| Some(c.daraja.environment.as_str().to_owned())),
        ..var(
            "MPESA_ENVIRONMENT",
            Daraja,
            "`sandbox` (https://sandbox.safaricom.co.ke) or `production` (https://api.safaricom.co.ke).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("by environment"),
        examples: &["http://127.0.0.1:8001/"],
        show: Some(|c| {
            Some(match (&c.daraja.base_url, c.sandbox) {
                (_, true) => "built-in simulator (--sandbox)".to_owned(),
                (Some(u), false) => u.to_string(),
                (None, false) => "Safaricom (by environment)".to_owned(),
            })
        }),
        ..var(
            "MPESA_API_BASE_URL",
            Daraja,
            "Daraja base URL override: the standalone simulator or a test double.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("none (required but for `serve --sandbox`)"),
        secret: Secret::Identifier,
        active: Some("replace-with-your-consumer-key"),
        show: Some(|c| Some(c.daraja.consumer_key.expose_secret().to_owned())),
        ..var(
            "MPESA_CONSUMER_KEY",
            Daraja,
            "Your Daraja app's consumer key (developer.safaricom.co.ke, My Apps). `serve --sandbox` accepts the simulator's own pair without it.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("none (required but for `serve --sandbox`)"),
        secret: Secret::Yes,
        active: Some("replace-with-your-consumer-secret"),
        show: Some(|c| Some(c.daraja.consumer_secret.expose_secret().to_owned())),
        ..var(
            "MPESA_CONSUMER_SECRET",
            Daraja,
            "Your Daraja app's consumer secret.",
        )
    },
    Var {
        aliases: &["MPESA_SHORTCODE"],
        when_unset: WhenUnset::Means("`174379` in sandbox; required in production"),
        active: Some("174379"),
        show: Some(|c| Some(c.daraja.shortcode.clone())),
        ..var(
            "MPESA_BUSINESS_SHORT_CODE",
            Daraja,
            "The paybill, or for a till the store number, that owns the passkey (5 to 7 digits).",
        )
    },
    Var {
        aliases: &["MPESA_PASSKEY"],
        when_unset: WhenUnset::Means(
            "Safaricom's published sandbox passkey (the value in .env.example) in sandbox; required in production",
        ),
        secret: Secret::Yes,
        active: Some(daraja::config::SANDBOX_PASSKEY),
        show: Some(|c| Some(c.daraja.passkey.expose_secret().to_owned())),
        ..var(
            "MPESA_PASS_KEY",
            Daraja,
            "The Lipa na M-Pesa Online passkey, emailed by Safaricom at go-live.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("CustomerPayBillOnline"),
        show: Some(|c| Some(c.daraja.transaction_type.as_str().to_owned())),
        ..var(
            "MPESA_TRANSACTION_TYPE",
            Daraja,
            "`CustomerPayBillOnline` (a paybill) or `CustomerBuyGoodsOnline` (a till).",
        )
    },
    Var {
        aliases: &["MPESA_TILL_NUMBER"],
        when_unset: WhenUnset::Means("the shortcode"),
        examples: &["174379"],
        show: Some(|c| Some(c.daraja.effective_party_b().to_owned())),
        ..var(
            "MPESA_PARTY_B",
            Daraja,
            "`PartyB` of a push: the till number for buy-goods (required then; 5 to 8 digits).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("`http://<GATEWAY_LISTEN>/`; required in production"),
        examples: &["https://pay.example.com/"],
        show: Some(|c| {
            Some(match &c.public_url {
                Some(u) => u.to_string(),
                None => format!("http://{}/ (from the listen address)", c.listen),
            })
        }),
        ..var(
            "MPESA_CALLBACK_URL",
            Daraja,
            "The public base URL at which Safaricom reaches this gateway (`https://` in production; nginx in front, see deploy/nginx/). Callbacks go to `<this>/callbacks/<MPESA_CALLBACK_SECRET>/stk`; leave it unset for `serve --sandbox`.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("64 hex digits, generated once and stored in the database"),
        secret: Secret::Yes,
        show: Some(|c| {
            c.callback_secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
        }),
        ..var(
            "MPESA_CALLBACK_SECRET",
            Daraja,
            "The secret path segment of callback URLs: at least 32 of `A-Z a-z 0-9 _ -` (the gateway refuses to start otherwise). Unset is best: every instance sharing the database then uses the one generated. To set it, use `openssl rand -hex 32`.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("off; the simulator's `testapi` with `--sandbox`"),
        examples: &["testapi"],
        show: Some(|c| c.daraja.initiator_name.clone()),
        ..var(
            "MPESA_INITIATOR_NAME",
            Daraja,
            "The initiator of B2C, Transaction Status, Account Balance and Reversal requests.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("off"),
        secret: Secret::Yes,
        show: Some(|c| {
            c.daraja
                .initiator_password
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
        }),
        ..var(
            "MPESA_INITIATOR_PASSWORD",
            Daraja,
            "The initiator's password (sent encrypted as the SecurityCredential).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("off (payouts are refused); `600000` with `--sandbox`"),
        examples: &["600000"],
        show: Some(|c| c.money_out.b2c_short_code.clone()),
        ..var(
            "MPESA_B2C_SHORT_CODE",
            Daraja,
            "The shortcode that pays out (B2C `PartyA`, and Transaction Status and Account Balance asked for it). Payouts are off without it and an initiator.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("120"),
        show: Some(|c| Some(c.money_out.result_wait.as_secs().to_string())),
        ..var(
            "INITIATOR_RESULT_WAIT_SECS",
            Daraja,
            "Seconds a refund's or payout's result may take before Transaction Status is asked about it (a status or balance question with no answer by then fails; ask again).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("86400"),
        show: Some(|c| Some(c.money_out.keep_asking.as_secs().to_string())),
        ..var(
            "INITIATOR_KEEP_ASKING_SECS",
            Daraja,
            "How long (from its creation) Transaction Status is asked, with backoff, about a refund or payout whose outcome is unknown; then it is held for a person. It is never sent again.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("Safaricom's certificate for the environment"),
        examples: &["/etc/mpesa-gateway/ProductionCertificate.cer"],
        show: Some(|c| match &c.daraja.certificate {
            daraja::CertificateSource::File(path) => Some(path.display().to_string()),
            _ => None,
        }),
        ..var(
            "MPESA_CERTIFICATE_PATH",
            Daraja,
            "The certificate that encrypts the initiator's password.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("30"),
        show: Some(|c| Some(c.daraja.request_timeout.as_secs().to_string())),
        ..var(
            "MPESA_TIMEOUT_SECS",
            Daraja,
            "Seconds one Daraja request may take, answer included.",
        )
    },
    // --- Payments -----------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Value("60"),
        show: Some(|c| Some(c.reconcile_after.as_secs().to_string())),
        ..var(
            "RECONCILE_AFTER_SECS",
            Payments,
            "Seconds a payment waits for its callback before the gateway asks Daraja (STK Query).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("300"),
        show: Some(|c| Some(c.payment_expires_after.as_secs().to_string())),
        ..var(
            "PAYMENT_EXPIRES_AFTER_SECS",
            Payments,
            "Seconds after which a payment with no outcome from M-Pesa is asked about less often (every 15 minutes at most, for `RECONCILE_KEEP_ASKING_SECS`), and one whose push's answer never came is held for a person. It ends `timed_out` when M-Pesa says so (`1037`, `1019`), never on \"still under processing\".",
        )
    },
    Var {
        when_unset: WhenUnset::Value("1"),
        show: Some(|c| Some(c.amount_bounds.min.to_string())),
        ..var(
            "AMOUNT_MIN",
            Payments,
            "The smallest accepted amount, in whole shillings.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("250000"),
        show: Some(|c| Some(c.amount_bounds.max.to_string())),
        ..var(
            "AMOUNT_MAX",
            Payments,
            "The largest accepted amount, in whole shillings.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("86400"),
        show: Some(|c| Some(c.reconcile_keep_asking.as_secs().to_string())),
        ..var(
            "RECONCILE_KEEP_ASKING_SECS",
            Payments,
            "How long (from its creation) Daraja is asked about a payment whose STK Queries get no answer, or no outcome; then it is held for a person.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("`MPESA_CALLBACK_URL`"),
        examples: &["https://pay.example.com/"],
        show: Some(|c| c.links.public_url.as_ref().map(|u| u.to_string())),
        ..var(
            "PUBLIC_URL",
            Payments,
            "The public base URL customers reach for payment links: a link's address is `<this>/pay/<slug>`.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("the pay page shows the link's title only"),
        examples: &["Amani Dance School"],
        show: Some(|c| c.links.business_name.clone()),
        ..var(
            "BUSINESS_NAME",
            Payments,
            "Your business's name, at the top of the pay page (at most 80 characters).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("3"),
        show: Some(|c| Some(c.links.limits.per_phone.to_string())),
        ..var(
            "PAY_PAGE_LIMIT_PER_PHONE",
            Payments,
            "STK prompts the pay page may send to one phone per `PAY_PAGE_LIMIT_WINDOW` (counted in the database, for every instance together).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("60"),
        show: Some(|c| Some(c.links.limits.per_link.to_string())),
        ..var(
            "PAY_PAGE_LIMIT_PER_LINK",
            Payments,
            "STK prompts the pay page may start through one link per `PAY_PAGE_LIMIT_WINDOW`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("10"),
        show: Some(|c| Some(c.links.limits.per_address.to_string())),
        ..var(
            "PAY_PAGE_LIMIT_PER_ADDRESS",
            Payments,
            "STK prompts the pay page may start from one client address per `PAY_PAGE_LIMIT_WINDOW` (the address as `TRUSTED_PROXIES` decides it; an IPv6 client counted by its /64).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("10m"),
        show: Some(|c| Some(duration(c.links.limits.window))),
        ..var(
            "PAY_PAGE_LIMIT_WINDOW",
            Payments,
            "The window of the pay page's limits (`30s`, `10m`, `1h`).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("150000"),
        show: Some(|c| Some(c.money_out.payout_max_amount.to_string())),
        ..var(
            "PAYOUT_MAX_AMOUNT",
            Payments,
            "The largest payout, in whole shillings (a larger one is refused with 422).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("no limit"),
        examples: &["500000"],
        show: Some(|c| c.money_out.payout_daily_limit.map(|v| v.to_string())),
        ..var(
            "PAYOUT_DAILY_LIMIT",
            Payments,
            "The most paid out per East Africa Time day, in whole shillings, counted in the database (every instance shares it); a payout past it is refused with 422. Failed and rejected payouts give their amount back.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("no approval needed"),
        examples: &["10000"],
        show: Some(|c| c.money_out.payout_approval_above.map(|v| v.to_string())),
        ..var(
            "PAYOUT_APPROVAL_ABOVE",
            Payments,
            "Payouts above this many shillings wait as `awaiting_approval` until an admin approves them on the dashboard (an admin other than the one who asked).",
        )
    },
    Var {
        when_unset: WhenUnset::Means(
            "MPESA_BUSINESS_SHORT_CODE; 600000 (the simulator's) with serve --sandbox",
        ),
        examples: &["600000"],
        show: Some(|c| Some(c.c2b.short_code.clone())),
        ..var(
            "MPESA_C2B_SHORT_CODE",
            Payments,
            "The paybill or till customers pay from their own M-Pesa menu (C2B). Confirmations for it become payments; `mpesa-gateway c2b register` registers this gateway's URLs for it.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("off"),
        examples: &["rules"],
        show: Some(|c| {
            Some(
                match c.c2b.validation {
                    super::C2bValidation::Off => "off",
                    super::C2bValidation::Rules => "rules",
                }
                .to_owned(),
            )
        }),
        ..var(
            "C2B_VALIDATION",
            Payments,
            "`off`: accept every C2B validation request. `rules`: refuse with Daraja's codes by C2B_ACCOUNT_PATTERN (C2B00012), AMOUNT_MIN/AMOUNT_MAX (C2B00013), C2B_REQUIRE_KNOWN_ACCOUNT (C2B00012) and a missing MSISDN (C2B00011). Safaricom calls the validation URL only when it has enabled external validation for the shortcode.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("any account number"),
        examples: &["INV[0-9]{1,6}"],
        show: Some(|c| {
            c.c2b.account_pattern.as_ref().map(|p| {
                let s = p.as_str();
                s.strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s)
                    .to_owned()
            })
        }),
        ..var(
            "C2B_ACCOUNT_PATTERN",
            Payments,
            "With C2B_VALIDATION=rules: a regular expression the whole account number (BillRefNumber, trimmed) must match, case-insensitively.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("false"),
        show: Some(|c| Some(c.c2b.require_known_account.to_string())),
        ..var(
            "C2B_REQUIRE_KNOWN_ACCOUNT",
            Payments,
            "With C2B_VALIDATION=rules: accept only account numbers registered through `POST /api/v1/c2b/accounts`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("accept"),
        examples: &["refuse"],
        show: Some(|c| {
            Some(
                match c.c2b.validation_fallback {
                    super::C2bFallback::Accept => "accept",
                    super::C2bFallback::Refuse => "refuse",
                }
                .to_owned(),
            )
        }),
        ..var(
            "C2B_VALIDATION_FALLBACK",
            Payments,
            "The answer to a validation request the rules cannot decide within 2 seconds (a slow database), well inside Daraja's 8: `accept` or `refuse` (C2B00016). Each use is logged.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("off"),
        examples: &["15m"],
        show: Some(|c| {
            Some(match c.c2b.pull_interval {
                Some(d) => format!("{}s", d.as_secs()),
                None => "off".to_owned(),
            })
        }),
        ..var(
            "PULL_TRANSACTIONS_INTERVAL",
            Payments,
            "How often to ask Daraja's Pull Transactions API for what the C2B shortcode received and book what no confirmation brought (`recovered_by: pull`); `off`, or at least 60s. Production shortcodes only.",
        )
    },
    // --- Server and logs ----------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Value("127.0.0.1:8000"),
        show: Some(|c| Some(c.listen.to_string())),
        ..var(
            "GATEWAY_LISTEN",
            Server,
            "The address the HTTP server binds. The Docker image sets `0.0.0.0:8000`; keep `127.0.0.1` behind a local nginx.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("10s"),
        show: Some(|c| Some(duration(c.http.header_read_timeout))),
        ..var(
            "HTTP_HEADER_READ_TIMEOUT",
            Server,
            "How long a client has to send a whole request head (from the connection's start, or on a kept-alive connection from the head's first byte).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("75s"),
        show: Some(|c| Some(duration(c.http.idle_timeout))),
        ..var(
            "HTTP_IDLE_TIMEOUT",
            Server,
            "How long a kept-alive connection may wait for its next request, and an answer for a client that stopped reading it (longer than a proxy's upstream keep-alive: nginx's is 60 s).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("1024"),
        show: Some(|c| Some(c.http.max_connections.to_string())),
        ..var(
            "HTTP_MAX_CONNECTIONS",
            Server,
            "Open connections at most; at the cap new ones wait in the kernel's queue. Never more than the open-files limit leaves room for (a quarter of it is kept for the database, Daraja and mail).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("20s"),
        show: Some(|c| Some(duration(c.http.shutdown_grace))),
        ..var(
            "HTTP_SHUTDOWN_GRACE",
            Server,
            "On SIGTERM, how long requests in flight may take to finish before their connections are closed.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("none: forwarding headers are ignored"),
        examples: &["127.0.0.1"],
        show: Some(|c| (!c.trusted_proxies.is_empty()).then(|| c.trusted_proxies.to_string())),
        ..var(
            "TRUSTED_PROXIES",
            Server,
            "Addresses or networks (`127.0.0.1, 10.0.0.0/8`) of your reverse proxies: only from them are `X-Forwarded-For` / `Forwarded` believed for the client's address (sign-in limits, the sandbox's simulator routes).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("text"),
        show: Some(|c| {
            Some(
                match c.log_format {
                    super::LogFormat::Text => "text",
                    super::LogFormat::Json => "json",
                }
                .to_owned(),
            )
        }),
        ..var(
            "LOG_FORMAT",
            Server,
            "Logs go to stderr as `text` or `json`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value(
            "info,sqlx=warn,hyper=warn,reqwest=warn,h2=warn,tower_http=warn",
        ),
        read_by: ReadBy::Other,
        ..var(
            "RUST_LOG",
            Server,
            "Which logs to write (tracing's filter syntax), e.g. `debug` or `info,sqlx=warn`.",
        )
    },
    // --- Database -----------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Value("sqlite://mpesa-gateway.db"),
        secret: Secret::InUrl,
        examples: &[
            "sqlite://mpesa-gateway.db",
            "postgres://mpesa:password@127.0.0.1:5432/mpesa",
            "mysql://mpesa:password@127.0.0.1:3306/mpesa",
        ],
        show: Some(|c| Some(c.database_url.expose_secret().to_owned())),
        ..var(
            "DATABASE_URL",
            Database,
            "`sqlite://…` (a file; one instance only), `postgres://user:password@host:5432/db` or `mysql://user:password@host:3306/db` (MySQL 8.0.1+, MariaDB 10.6+). Percent-encode special characters in the password. docker-compose.yml sets it itself.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("10"),
        show: Some(|c| Some(c.database_max_connections.to_string())),
        ..var(
            "DATABASE_MAX_CONNECTIONS",
            Database,
            "The connection pool's size, per instance.",
        )
    },
    Var {
        examples: &["127.0.0.1"],
        ..var(
            "DB_HOST",
            Database,
            "A MySQL server given by parts (as FastAPI callback servers name them), used only when `DATABASE_URL` is unset: its host.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("3306"),
        ..var("DB_PORT", Database, "The `DB_HOST` server's port.")
    },
    Var {
        when_unset: WhenUnset::Value("root"),
        ..var("DB_USER", Database, "The `DB_HOST` server's user.")
    },
    Var {
        secret: Secret::Yes,
        ..var("DB_PASSWORD", Database, "The `DB_HOST` user's password.")
    },
    Var {
        when_unset: WhenUnset::Means("none (required with `DB_HOST`)"),
        examples: &["mpesa"],
        ..var("DB_NAME", Database, "The database on the `DB_HOST` server.")
    },
    // --- Telegram -----------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Means("off"),
        secret: Secret::Yes,
        show: Some(|c| {
            c.telegram
                .as_ref()
                .map(|t| t.bot_token.expose_secret().to_owned())
        }),
        ..var(
            "TELEGRAM_BOT_TOKEN",
            Telegram,
            "The bot's token from @BotFather: the bot and Telegram notifications.",
        )
    },
    Var {
        aliases: &["TELEGRAM_ADMIN_CHAT_ID"],
        when_unset: WhenUnset::Means("none"),
        show: Some(|c| {
            c.telegram
                .as_ref()
                .and_then(|t| t.admin_chat_id)
                .map(|id| id.to_string())
        }),
        ..var(
            "ADMIN_CHAT_ID",
            Telegram,
            "The chat (a person or a group) that gets alerts and may use `/stats` and `/pending`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("https://api.telegram.org"),
        show: Some(|c| c.telegram.as_ref().map(|t| t.api_base.to_string())),
        ..var(
            "TELEGRAM_API_BASE",
            Telegram,
            "The Bot API's base URL (a test double).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("long polling"),
        secret: Secret::Yes,
        show: Some(|c| {
            c.telegram
                .as_ref()
                .and_then(|t| t.webhook_secret.as_ref())
                .map(|s| s.expose_secret().to_owned())
        }),
        ..var(
            "TELEGRAM_WEBHOOK_SECRET",
            Telegram,
            "Webhook mode instead of long polling, with this secret token (1 to 256 of `A-Z a-z 0-9 _ -`).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("`<MPESA_CALLBACK_URL>/telegram/webhook`"),
        secret: Secret::InUrl,
        show: Some(|c| {
            c.telegram
                .as_ref()
                .and_then(|t| t.webhook_url.as_ref())
                .map(|u| u.to_string())
        }),
        ..var(
            "TELEGRAM_WEBHOOK_URL",
            Telegram,
            "Where Telegram posts updates in webhook mode.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("30s"),
        show: Some(|c| c.telegram.as_ref().map(|t| duration(t.poll_timeout))),
        ..var(
            "TELEGRAM_POLL_TIMEOUT",
            Telegram,
            "How long one long poll waits, `1s` to `50s`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("60s"),
        show: Some(|c| c.telegram.as_ref().map(|t| duration(t.poll_lease))),
        ..var(
            "TELEGRAM_POLL_LEASE",
            Telegram,
            "How long the poller's lease, and an instance's claim on the update it handles, last unrenewed: after a crash, how long until another instance polls, and takes that update over (`1s` to `1h`).",
        )
    },
    // --- Email --------------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Means("off"),
        secret: Secret::InUrl,
        examples: &["smtps://user:password@smtp.example.com:465"],
        show: Some(|c| {
            c.email
                .as_ref()
                .map(|e| e.smtp_url.expose_secret().to_owned())
        }),
        ..var(
            "SMTP_URL",
            Email,
            "The mail server: `smtps://user:pass@host:465` (implicit TLS), `smtp://user:pass@host:587` (STARTTLS when offered), `…?tls=required` (STARTTLS or nothing), `…?tls=none` (a relay on loopback).",
        )
    },
    Var {
        aliases: &["DEFAULT_FROM_EMAIL"],
        when_unset: WhenUnset::Means("none (required with `SMTP_URL`)"),
        examples: &["payments@example.com"],
        show: Some(|c| c.email.as_ref().map(|e| e.from.clone())),
        ..var("EMAIL_FROM", Email, "The sender address.")
    },
    Var {
        when_unset: WhenUnset::Means("none"),
        examples: &["ops@example.com"],
        show: Some(|c| c.email.as_ref().and_then(|e| e.admin_email.clone())),
        ..var(
            "ADMIN_EMAIL",
            Email,
            "Gets mail on failed payments and on payments held for review.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("the system's"),
        examples: &["/etc/mpesa-gateway/smtp-ca.pem"],
        show: Some(|c| {
            c.email
                .as_ref()
                .and_then(|e| e.ca_file.as_ref())
                .map(|p| p.display().to_string())
        }),
        ..var(
            "SMTP_CA_FILE",
            Email,
            "A PEM file of extra CAs to trust (a private relay).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("30s"),
        show: Some(|c| Some(duration(c.outbox.smtp_timeout))),
        ..var("SMTP_TIMEOUT", Email, "Each SMTP command's timeout.")
    },
    Var {
        examples: &["smtp.example.com"],
        ..var(
            "EMAIL_HOST",
            Email,
            "The mail server given by parts (as Django names them), used only when `SMTP_URL` is unset: its host.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("`465` with `EMAIL_USE_SSL`, else `587`"),
        ..var("EMAIL_PORT", Email, "The `EMAIL_HOST` server's port.")
    },
    var("EMAIL_HOST_USER", Email, "The `EMAIL_HOST` user."),
    Var {
        secret: Secret::Yes,
        ..var(
            "EMAIL_HOST_PASSWORD",
            Email,
            "The `EMAIL_HOST` user's password.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("false"),
        ..var(
            "EMAIL_USE_TLS",
            Email,
            "`true`: STARTTLS or nothing with `EMAIL_HOST`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("false"),
        ..var(
            "EMAIL_USE_SSL",
            Email,
            "`true`: implicit TLS with `EMAIL_HOST`.",
        )
    },
    // --- Webhooks -----------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Means("off"),
        secret: Secret::InUrl,
        examples: &["https://shop.example.com/mpesa/webhook"],
        show: Some(|c| c.webhook.as_ref().map(|w| w.url.to_string())),
        ..var(
            "WEBHOOK_URL",
            Webhooks,
            "Where signed events go on every final state.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("none (required with `WEBHOOK_URL`)"),
        secret: Secret::Yes,
        show: Some(|c| {
            c.webhook
                .as_ref()
                .map(|w| w.secret.expose_secret().to_owned())
        }),
        ..var(
            "WEBHOOK_SECRET",
            Webhooks,
            "The signing secret, 16 characters or more.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("10s"),
        show: Some(|c| Some(duration(c.outbox.webhook_timeout))),
        ..var(
            "WEBHOOK_TIMEOUT",
            Webhooks,
            "One attempt, connection included.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("false"),
        show: Some(|c| Some(c.webhook_allow_private.to_string())),
        ..var(
            "WEBHOOK_ALLOW_PRIVATE",
            Webhooks,
            "`true` allows loopback and private destinations (your app on your own network).",
        )
    },
    // --- Outbox -------------------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Value("30s,2m,10m,30m,1h,2h,4h,8h,12h,24h,24h"),
        show: Some(|c| Some(c.outbox.schedules.webhook.to_string())),
        ..var(
            "OUTBOX_RETRY_WEBHOOK",
            Outbox,
            "Delays between a webhook's attempts (`500ms`, `30s`, `2m`, `1h`, `1d`), comma-separated: about 3 days.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("1m,5m,15m,1h,4h,8h,12h"),
        show: Some(|c| Some(c.outbox.schedules.email.to_string())),
        ..var(
            "OUTBOX_RETRY_EMAIL",
            Outbox,
            "Delays between an email's attempts: about a day.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("10s,1m,5m,30m,2h,6h,12h"),
        show: Some(|c| Some(c.outbox.schedules.telegram.to_string())),
        ..var(
            "OUTBOX_RETRY_TELEGRAM",
            Outbox,
            "Delays between a Telegram message's attempts: about a day.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("120s"),
        show: Some(|c| Some(duration(c.outbox.lease))),
        ..var(
            "OUTBOX_LEASE",
            Outbox,
            "How long an instance owns an event it is delivering; after a crash, how long until the event is delivered again.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("1s"),
        show: Some(|c| Some(duration(c.outbox.poll_interval))),
        ..var(
            "OUTBOX_POLL_INTERVAL",
            Outbox,
            "How often an idle worker looks for retries that came due.",
        )
    },
    // --- Command-line tools -------------------------------------------------------------------
    Var {
        when_unset: WhenUnset::Value("http://127.0.0.1:8000"),
        read_by: ReadBy::Other,
        ..var(
            "MPESA_GATEWAY_URL",
            Cli,
            "`pay` and `healthcheck`: the running gateway's URL (`--url`).",
        )
    },
    Var {
        when_unset: WhenUnset::Means("in sandbox, the saved key"),
        secret: Secret::Yes,
        read_by: ReadBy::Other,
        ..var(
            "MPESA_GATEWAY_API_KEY",
            Cli,
            "`pay`: the API key (`--api-key`).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("127.0.0.1:8001"),
        read_by: ReadBy::Other,
        ..var(
            "SANDBOX_LISTEN",
            Cli,
            "`mpesa-gateway sandbox`: the standalone simulator's address (`--listen`).",
        )
    },
    // --- The simulator (read by crates/daraja-sim) --------------------------------------------
    Var {
        when_unset: WhenUnset::Value("sandbox"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_ENVIRONMENT",
            Simulator,
            "The simulated Daraja environment: `sandbox` or `production`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("3000"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_CALLBACK_DELAY_MS",
            Simulator,
            "Milliseconds from a push to its outcome and callback.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("60000"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_PROMPT_TIMEOUT_MS",
            Simulator,
            "Milliseconds until an unanswered prompt gives `1037`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("30000"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_LATE_DELAY_MS",
            Simulator,
            "The extra delay of late callbacks, in milliseconds.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("2000"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_RESULT_DELAY_MS",
            Simulator,
            "Milliseconds until B2C, status, balance and reversal results.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("3600"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_TOKEN_LIFETIME_SECS",
            Simulator,
            "The real lifetime of access tokens, in seconds.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("true"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_INVALIDATE_PREVIOUS_TOKEN",
            Simulator,
            "Whether a new token invalidates the previous one.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("lenient"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_CREDENTIAL_MODE",
            Simulator,
            "`lenient` or `strict` credential checks.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("250000"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_MAX_AMOUNT",
            Simulator,
            "The largest accepted amount, in shillings.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("false"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_NO_CALLBACKS",
            Simulator,
            "`true`: never send any callback or result (only STK Query resolves payments).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("true"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_LOCK_SUBSCRIBER",
            Simulator,
            "`false`: accept a second push to a number whose prompt is still open (no \"Unable to lock subscriber\").",
        )
    },
    Var {
        when_unset: WhenUnset::Value("being_processed"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_PENDING_QUERY",
            Simulator,
            "The answer to an STK Query while the prompt is open: `being_processed` or `4999`.",
        )
    },
    Var {
        when_unset: WhenUnset::Value("120"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_RULE_LIMIT_SECS",
            Simulator,
            "Seconds in which the same amount pushed to the same phone again fails with `17` (`0`: off).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("strict"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_AMOUNTS",
            Simulator,
            "`strict`: amounts only as whole numbers (`1`, `\"1\"`); `lenient`: also `1.0` and `\"1.00\"`.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("off"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_TIMESTAMP_MAX_SKEW_SECS",
            Simulator,
            "Refuse an STK `Timestamp` further than this many seconds from East Africa Time (a guess: Daraja's rule is not established).",
        )
    },
    Var {
        when_unset: WhenUnset::Value("prompt_limit"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_LONG_REFERENCES",
            Simulator,
            "A long `AccountReference`/`TransactionDesc`: `prompt_limit` (`1025` past a 182-character prompt) or `refuse`.",
        )
    },
    Var {
        when_unset: WhenUnset::Means("none"),
        read_by: ReadBy::Other,
        ..var(
            "DARAJA_SIM_C2B_VALIDATION",
            Simulator,
            "Shortcodes whose C2B payments go to the ValidationURL first, comma-separated.",
        )
    },
    // --- docker-compose.yml -------------------------------------------------------------------
    Var {
        active: Some("mariadb"),
        read_by: ReadBy::Other,
        ..var(
            "COMPOSE_PROFILES",
            Compose,
            "Which stack `docker compose up` starts: `mariadb` or `postgres`.",
        )
    },
    Var {
        active: Some("127.0.0.1:8000"),
        read_by: ReadBy::Other,
        ..var(
            "GATEWAY_PUBLISH",
            Compose,
            "The host address the gateway's port is published on (nginx on the host proxies to it).",
        )
    },
    Var {
        secret: Secret::Yes,
        active: Some("change-me-mariadb-password"),
        read_by: ReadBy::Other,
        ..var(
            "MARIADB_PASSWORD",
            Compose,
            "The password of the gateway's MariaDB user, used to build `DATABASE_URL`: letters and digits only (`openssl rand -hex 24`), so that it needs no escaping in the URL.",
        )
    },
    Var {
        secret: Secret::Yes,
        active: Some("change-me-mariadb-root-password"),
        read_by: ReadBy::Other,
        ..var(
            "MARIADB_ROOT_PASSWORD",
            Compose,
            "MariaDB's root password: letters and digits only.",
        )
    },
    Var {
        secret: Secret::Yes,
        active: Some("change-me-postgres-password"),
        read_by: ReadBy::Other,
        ..var(
            "POSTGRES_PASSWORD",
            Compose,
            "The password of the gateway's PostgreSQL user: letters and digits only.",
        )
    },
];
