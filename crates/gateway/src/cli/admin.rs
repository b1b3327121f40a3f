//! `mpesa-gateway admin create-user|delete-user|sign-out-everywhere|list-users`: dashboard
//! users, with Argon2 password hashes.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use crate::accounts::{AccountError, Accounts, check_username};

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

pub async fn run(accounts: &Accounts, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser { username } => {
            let username = username.trim().to_owned();
            if let Err(why) = check_username(&username) {
                bail!("--username: {why}");
            }
            let password = read_password()?;
            let created = match accounts.set_admin_user(&username, &password).await {
                Err(AccountError::Refused(why)) => bail!("{why}"),
                other => other?,
            };
            if created {
                println!("created dashboard user {username}");
            } else {
                println!(
                    "updated the password of dashboard user {username}; their sessions have ended"
                );
            }
        }
        AdminCommand::DeleteUser { username } => {
            if !accounts.remove_admin_user(username.trim()).await? {
                bail!("there is no dashboard user {}", username.trim());
            }
            println!(
                "removed dashboard user {}; their sessions have ended",
                username.trim()
            );
        }
        AdminCommand::SignOutEverywhere { username } => {
            let username = username.trim();
            let Some(ended) = accounts.sign_out_everywhere(username).await? else {
                bail!("there is no dashboard user {username}");
            };
            println!("ended {ended} session(s) of dashboard user {username}");
        }
        AdminCommand::ListUsers => {
            for u in accounts.admin_users().await? {
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
