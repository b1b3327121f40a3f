//! `mpesa-gateway admin create-user|delete-user|sign-out-everywhere|list-users`: dashboard
//! users, with Argon2 password hashes.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use mpesa_storage::{AdminUser, Storage};

use crate::ids::{new_id, now_ms};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a dashboard user, or set a new password for an existing one (which ends all of
    /// that user's sessions). The password is asked at a prompt, or read from the first line of
    /// stdin when it is not a terminal.
    CreateUser {
        #[arg(long)]
        username: String,
    },
    /// Remove a dashboard user and end their sessions.
    DeleteUser {
        #[arg(long)]
        username: String,
    },
    /// End every dashboard session of a user (they sign in again).
    SignOutEverywhere {
        #[arg(long)]
        username: String,
    },
    ListUsers,
}

pub const MIN_PASSWORD_CHARS: usize = 10;

/// [`accounts::hash_password`](crate::accounts::hash_password), for the CLI.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    crate::accounts::hash_password(password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

pub async fn run(storage: &dyn Storage, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser { username } => {
            let username = username.trim().to_owned();
            if username.is_empty()
                || username.len() > 64
                || !username
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
            {
                bail!("--username: 1 to 64 letters, digits or . _ - @");
            }
            let password = read_password()?;
            if password.chars().count() < MIN_PASSWORD_CHARS {
                bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
            }
            let hash = hash_password(&password)?;
            let created = storage
                .upsert_admin_user(&AdminUser {
                    id: new_id("usr"),
                    username: username.clone(),
                    password_hash: hash,
                    created_at: now_ms(),
                })
                .await?;
            if created {
                println!("created dashboard user {username}");
            } else {
                println!(
                    "updated the password of dashboard user {username}; their sessions have ended"
                );
            }
        }
        AdminCommand::DeleteUser { username } => {
            if !storage.delete_admin_user(username.trim()).await? {
                bail!("there is no dashboard user {}", username.trim());
            }
            println!(
                "removed dashboard user {}; their sessions have ended",
                username.trim()
            );
        }
        AdminCommand::SignOutEverywhere { username } => {
            let username = username.trim();
            if storage.find_admin_user(username).await?.is_none() {
                bail!("there is no dashboard user {username}");
            }
            let ended = storage.delete_sessions_of(username).await?;
            println!("ended {ended} session(s) of dashboard user {username}");
        }
        AdminCommand::ListUsers => {
            for u in storage.list_admin_users().await? {
                println!("{}  {}", u.id, u.username);
            }
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("Password: ").context("could not read the password")?;
        let second = rpassword::prompt_password("Password again: ")
            .context("could not read the password")?;
        if first != second {
            bail!("the passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("could not read the password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
