//! `mpesa-gateway config check`: the effective configuration, secrets masked, and a test of each
//! connection it names.

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::config::Config;

/// Prints the report; returns whether every check passed.
pub async fn run(config: &Config) -> bool {
    println!("Effective configuration (secrets masked):");
    for (name, value) in config.describe() {
        println!("  {name:<28} {value}");
    }
    println!("\nChecks:");
    let mut all_ok = true;
    let mut report = |name: &str, result: Result<String, String>| {
        match &result {
            Ok(detail) => println!("  [ok]   {name}: {detail}"),
            Err(detail) => println!("  [FAIL] {name}: {detail}"),
        }
        all_ok &= result.is_ok();
    };

    let db = async {
        let storage =
            mpesa_storage::connect(config.database_url.expose_secret(), &Default::default())
                .await
                .map_err(|e| e.to_string())?;
        let version = storage.check_server().await.map_err(|e| e.to_string())?;
        storage.close().await;
        Ok::<_, String>(format!("{} {version}", storage.backend().as_str()))
    };
    report(
        "database",
        tokio::time::timeout(Duration::from_secs(10), db)
            .await
            .unwrap_or_else(|_| Err("no answer in 10 s".into())),
    );

    if config.sandbox {
        report(
            "daraja",
            Ok("the built-in simulator runs in-process with `serve --sandbox`".into()),
        );
    } else {
        daraja::install_crypto_provider();
        let result = match daraja::DarajaClient::new(config.daraja.clone()) {
            Ok(client) => {
                match tokio::time::timeout(Duration::from_secs(20), client.check_credentials())
                    .await
                {
                    Ok(Ok(())) => Ok(format!("OAuth token obtained from {}", client.base_url())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in 20 s".into()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        report("daraja", result);
    }

    report("c2b urls", c2b_urls(config));

    if let Some(email) = &config.email {
        let result = match crate::outbox::email::EmailSender::new(email, config.outbox.smtp_timeout)
        {
            Ok(sender) => {
                let t = sender.target().clone();
                match tokio::time::timeout(Duration::from_secs(30), sender.check_connection()).await
                {
                    Ok(Ok(())) => Ok(format!(
                        "{}:{} answered ({}{})",
                        t.host,
                        t.port,
                        t.security.describe(),
                        if t.username.is_some() {
                            ", logged in"
                        } else {
                            ""
                        }
                    )),
                    Ok(Err(e)) => Err(format!("{}:{}: {e}", t.host, t.port)),
                    Err(_) => Err(format!("{}:{}: no answer in 30 s", t.host, t.port)),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        report("smtp", result);
    }

    if let Some(telegram) = &config.telegram {
        let result =
            match crate::telegram::BotApi::new(&telegram.api_base, telegram.bot_token.clone()) {
                Ok(api) => match api.get_me().await {
                    Ok(me) => Ok(format!(
                        "getMe: the bot is @{}",
                        me.username.unwrap_or(me.first_name)
                    )),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
        report("telegram", result);
    }

    if let Some(webhook) = &config.webhook {
        let result = match crate::outbox::webhook::WebhookSender::new(
            webhook.url.clone(),
            webhook.secret.clone(),
            config.webhook_allow_private,
            config.outbox.webhook_timeout,
        ) {
            Ok(sender) => match sender.check_destination().await {
                Ok(addrs) => {
                    let reachable = match addrs.first() {
                        Some(addr) => tokio::time::timeout(
                            Duration::from_secs(10),
                            tokio::net::TcpStream::connect(addr),
                        )
                        .await
                        .map_err(|_| format!("{addr}: no answer in 10 s"))
                        .and_then(|r| r.map_err(|e| format!("{addr}: {e}"))),
                        None => Err("the host has no address".into()),
                    };
                    reachable.map(|_| {
                        format!(
                            "{} accepts connections (nothing sent; try `notify test --channel webhook`)",
                            crate::config::mask_url(webhook.url.as_str())
                        )
                    })
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e.to_string()),
        };
        report("webhook", result);
    }
    all_ok
}

/// Whether the C2B URLs `c2b register` would send pass Daraja's URL rules (forbidden words,
/// https in production), before anything is sent.
fn c2b_urls(config: &Config) -> Result<String, String> {
    let production = config.daraja.environment == daraja::Environment::Production;
    let Some(base) = &config.public_url else {
        return Ok(format!(
            "no MPESA_CALLBACK_URL: the URLs use this machine's address (fine for the sandbox), shortcode {}",
            config.c2b.short_code
        ));
    };
    // A generated secret is hex: it cannot hold a forbidden word. A configured one is checked.
    let secret = config
        .callback_secret
        .as_ref()
        .map(|s| s.expose_secret().to_owned())
        .unwrap_or_else(|| "0".repeat(64));
    for path in ["c2b/confirmation", "c2b/validation"] {
        let url = base
            .join(&format!("callbacks/{secret}/{path}"))
            .map_err(|e| e.to_string())?;
        if let Some(why) = crate::cli::c2b::url_refusal(&url, production) {
            return Err(format!("`c2b register` would be refused: {why}"));
        }
    }
    Ok(format!(
        "{}callbacks/…/c2b/confirmation passes Daraja's URL rules (shortcode {})",
        base, config.c2b.short_code
    ))
}
