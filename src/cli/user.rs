//! `witness user add|reset|disable|enable|list`: manages user accounts in the database, with
//! the host's authority (audited as `cli`): no second security administrator's approval, as
//! whoever runs it holds the database and the keys. This is how the first accounts are made.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use witness::db::Pool;
use witness::identity::{self, users};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Action {
    /// Create a user; prints a one-time password to change at first login.
    Add {
        username: String,
        /// system_administrator, security_administrator, audit_administrator, witness_staff,
        /// regulator, archive_clerk or discipline_officer.
        #[arg(long)]
        role: String,
        /// Trading categories in a regulator's scope (repeatable).
        #[arg(long = "category")]
        categories: Vec<String>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// A new one-time password (and with --totp, a cleared second factor); sessions end.
    Reset {
        username: String,
        #[arg(long)]
        totp: bool,
    },
    /// Lock a user out: sessions and tokens end at once.
    Disable {
        username: String,
    },
    Enable {
        username: String,
    },
    List,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (_, pool) = super::open_db(args.config.as_deref()).await?;
    match args.action {
        Action::Add {
            username,
            role,
            categories,
            display_name,
        } => add(&pool, &username, &role, &categories, &display_name).await?,
        Action::Reset { username, totp } => {
            let one_time =
                identity::reset_user(&pool, &username, totp, &super::local_actor()).await?;
            println!("one-time password for {username}: {one_time}");
        }
        Action::Disable { username } => {
            identity::set_disabled(&pool, &username, true, &super::local_actor()).await?;
            println!("{username} disabled; their sessions and tokens have ended");
        }
        Action::Enable { username } => {
            identity::set_disabled(&pool, &username, false, &super::local_actor()).await?;
            println!("{username} enabled");
        }
        Action::List => list(&pool).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(
    pool: &Pool,
    username: &str,
    role: &str,
    categories: &[String],
    display_name: &str,
) -> anyhow::Result<()> {
    let role = identity::parse_role(role)?;
    let (u, one_time) = identity::add_user(
        pool,
        identity::AddUser {
            username,
            display_name,
            role,
            categories,
        },
        &super::local_actor(),
    )
    .await?;
    println!("user {} ({}) created", u.username, u.role.as_str());
    println!("one-time password: {one_time}");
    Ok(())
}

/// One line a user: name, role, categories and flags.
async fn list(pool: &Pool) -> anyhow::Result<()> {
    for u in users::all(pool).await? {
        println!(
            "{:<20} {:<20} {:<24} {}{}{}",
            u.username,
            u.role.as_str(),
            u.categories.join(","),
            if u.totp_enabled { "totp " } else { "" },
            if u.disabled { "disabled " } else { "" },
            if u.must_change_password {
                "one-time-password"
            } else {
                ""
            },
        );
    }
    Ok(())
}
