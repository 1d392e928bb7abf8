//! `gate`: take one of S slots of a counting semaphore, run a command, give
//! the slot back. See the `syncomm-gate` crate for the mechanism.
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use syncomm_cli::{output, Fail};
use syncomm_common::duration::format_duration;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::{parse_duration, Name};
use syncomm_gate::{Acquire, Gate, GateError, Status, MAX_SLOTS};

const EXAMPLES: &str = "
  gate --name build --slots 2 -- sleep 5        # at most 2 of these run at once
  gate --name build --timeout 30s -- sleep 1    # give up after 30 s of waiting (exit 75)
  gate --slots 3 --id 7                         # the demo: prints 7 starting/finished critical section
  gate --status --name build                    # who holds which slot, how many wait
  gate --remove --name build                    # delete the semaphore, once no slot is held";

const EXIT_STATUS: &[&str] = &[
    "  0      the demo ran, --status printed, or --remove removed the semaphore",
    "  1      failure: the semaphore could not be made or used; --status or --remove of a",
    "         semaphore that does not exist",
    syncomm_cli::help::EXIT_USAGE,
    "  75     --timeout passed before a slot came free (EX_TEMPFAIL; another code: -E N)",
    "  126    the command was found but could not be run",
    "  127    the command was not found",
    "  128+N  stopped by signal N while waiting for a slot, or during the demo",
    "  other  with COMMAND: the command's own status (gate becomes the command)",
];

/// gate's exit status when its own --timeout expires: 75, EX_TEMPFAIL of
/// sysexits.h ("a temporary failure; try again later").
const TIMEOUT_EXIT: u8 = 75;

/// Take a slot of the semaphore NAME, run COMMAND, give the slot back.
///
/// The semaphore is a System V semaphore set taken with SEM_UNDO: when a holder
/// dies, even by kill -9, the kernel gives its slot back and wakes a waiter.
/// With a COMMAND, gate takes a slot and then becomes the command (execve), so
/// the slot is held exactly as long as the command runs and gate's exit status
/// is the command's. `syncomm ls` lists the semaphores, `syncomm clean` removes
/// the stale ones.
#[derive(Parser, Debug)]
#[command(
    name = "gate",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, syncomm_cli::help::ENV)
)]
struct Args {
    /// The semaphore's name.
    #[arg(long, value_name = "NAME", default_value = "default")]
    name: Name,

    /// Slots of the semaphore (set when it is created: default 3; a different
    /// count while it exists is an error).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_SLOTS as i64))]
    slots: Option<u16>,

    /// Give up waiting for a slot after DUR (exit status: see -E); 0 tries once.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// The exit status when --timeout expires (like flock -E): distinct from
    /// the command's own statuses, so a script can tell "no slot" from "the
    /// command failed".
    #[arg(short = 'E', long, value_name = "N", default_value_t = TIMEOUT_EXIT,
          value_parser = clap::value_parser!(u8).range(1..))]
    conflict_exit_code: u8,

    /// Without COMMAND: the id printed in the demo lines (default: the process id).
    #[arg(long, value_name = "ID", conflicts_with = "command")]
    id: Option<String>,

    /// Without COMMAND: how long to stay in the critical section (default: random, 0-3s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, conflicts_with = "command")]
    hold: Option<Duration>,

    /// Print the slots, which process holds each, and how many wait.
    #[arg(long, conflicts_with_all = ["remove", "command", "timeout", "hold", "id"])]
    status: bool,

    /// Remove the semaphore (only when no slot is held).
    #[arg(long, conflicts_with_all = ["command", "timeout", "hold", "id"])]
    remove: bool,

    /// One JSON line per event: the status, the removal, the demo's two
    /// lines; with COMMAND, only a failure before it runs.
    #[arg(long)]
    json: bool,

    /// The command to run while holding a slot.
    /// (An option before COMMAND that gate does not know is a usage error, not
    /// the command: `gate --stauts` creates nothing; put `--` before a command
    /// that starts with `-`.)
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    syncomm_cli::run("gate", || {
        let args = syncomm_cli::parse::<Args>()?;
        output::enable(args.json);
        if args.status {
            status(&args)
        } else if args.remove {
            remove(&args)
        } else {
            take(&args)
        }
    })
}

fn status(args: &Args) -> anyhow::Result<u8> {
    let dir = syncomm_cli::run_dir()?;
    let gate = Gate::open(&dir, &args.name)?.ok_or_else(|| not_there(&dir, &args.name))?;
    let st = gate.status()?;
    if args.json {
        output::emit(output::event("status").fields(&st))?;
    } else {
        print_status(&st)?;
    }
    Ok(0)
}

fn print_status(st: &Status) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "gate {}: {}, {} held, {} free, {} waiting",
        st.name,
        plural(st.slots, "slot"),
        st.slots - st.free,
        st.free,
        st.waiting
    )?;
    for slot in 0..st.slots {
        match st.holders.iter().find(|h| h.slot == slot) {
            Some(h) => writeln!(
                out,
                "  slot {slot}: pid {} ({})",
                h.pid,
                h.command.as_deref().unwrap_or("?")
            )?,
            None => writeln!(out, "  slot {slot}: free")?,
        }
    }
    out.flush()
}

fn not_there(dir: &RunDir, name: &Name) -> anyhow::Error {
    Fail::failed(format!(
        "semaphore {name} does not exist in {} (the first gate that uses it creates it)",
        dir.path().display()
    ))
    .into()
}

fn remove(args: &Args) -> anyhow::Result<u8> {
    let dir = syncomm_cli::run_dir()?;
    if Gate::remove(&dir, &args.name)? {
        if args.json {
            output::emit(output::event("removed").field("name", args.name.as_str()))?;
        } else {
            println!("gate: removed semaphore {}", args.name);
        }
        Ok(0)
    } else {
        Err(not_there(&dir, &args.name))
    }
}

fn take(args: &Args) -> anyhow::Result<u8> {
    let dir = syncomm_cli::run_dir()?;
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    if std::io::stderr().is_terminal() {
        // Say where we wait if every slot is taken now (a hint: it may change).
        if let Ok(Some(g)) = Gate::open(&dir, &args.name) {
            if g.status().is_ok_and(|st| st.free == 0) {
                let what = format!("a slot of gate {:?}", args.name.as_str());
                syncomm_common::waitnote::waiting("gate", &what, dir.path());
            }
        }
    }
    let taken =
        syncomm_gate::open_and_acquire(&dir, &args.name, args.slots, args.timeout, &shutdown)
            .map_err(|e| match e {
                GateError::SlotsDiffer { .. } => anyhow::Error::new(Fail::usage(e.to_string())),
                e => e.into(),
            });
    let (gate, got) = match taken {
        Err(e) if matches!(e.downcast_ref(), Some(GateError::Interrupted(_))) => {
            return Ok(shutdown.exit_code())
        }
        // Timed out waiting for the runtime file's lock: gate's own timeout too.
        Err(e) if matches!(e.downcast_ref(), Some(GateError::FileLocked { .. })) => {
            return Err(Fail::with_code(args.conflict_exit_code, e.to_string()).into())
        }
        other => other?,
    };
    let slot = match got {
        Acquire::Slot(slot) => slot,
        Acquire::TimedOut => {
            let waited = format_duration(args.timeout.unwrap_or_default());
            return Err(Fail::with_code(args.conflict_exit_code, format!(
                "timed out after {waited} waiting for a slot of {} ({}, all held; runtime directory {})",
                args.name,
                plural(gate.slots(), "slot"),
                dir.path().display()
            ))
            .with_field("name", args.name.as_str())
            .with_field("timeout_ms", output::ms(args.timeout.unwrap_or_default()))
            .into());
        }
        Acquire::Interrupted => return Ok(shutdown.exit_code()),
    };
    if let Some((program, rest)) = args.command.split_first() {
        // Become the command: the slot's SEM_UNDO record survives execve, so
        // the kernel releases the slot when the command ends, however it ends.
        let err = std::process::Command::new(program).args(rest).exec();
        let code = if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        return Err(Fail::with_code(
            code,
            format!(
                "cannot run {}: {}",
                program.to_string_lossy(),
                os_reason(&err)
            ),
        )
        .into());
    }
    demo(args, &gate, slot, &shutdown)
}

/// The seed's demonstration: say so, stay a while, say so, leave.
fn demo(args: &Args, gate: &Gate, slot: u16, shutdown: &Shutdown) -> anyhow::Result<u8> {
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| std::process::id().to_string());
    let hold = args
        .hold
        .unwrap_or_else(|| Duration::from_millis(rand::random::<u64>() % 3001));
    let mut out = std::io::stdout();
    if args.json {
        output::emit(
            output::event("started")
                .field("id", &id)
                .field("slot", slot)
                .ms("hold_ms", hold),
        )?;
    } else {
        writeln!(out, "{id} starting critical section")?;
        out.flush()?;
    }
    shutdown.sleep(hold);
    if shutdown.requested() {
        gate.release(slot)?;
        return Ok(shutdown.exit_code());
    }
    if args.json {
        output::emit(
            output::event("finished")
                .field("id", &id)
                .field("slot", slot),
        )?;
    } else {
        writeln!(out, "{id} finished critical section")?;
        out.flush()?;
    }
    gate.release(slot)?;
    Ok(0)
}

use syncomm_sys::errtext::os_reason;

fn plural(n: u16, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
