//! The binary: parse, run, print the error chain once, exit with the
//! sysexits code of SPEC §6.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match popfetch::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(64),
            };
        }
    };
    if cli.quiet && cli.verbose > 0 {
        // clap checks the conflict only where both come on the same side
        // of the subcommand (`-q sync -v` slips through it).
        let e = popfetch::cli::Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "the argument '--quiet' cannot be used with '--verbose'",
        );
        let _ = e.print();
        return ExitCode::from(64);
    }
    let color = cli.color;
    match popfetch::commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let label = popfetch::ui::report::error_label(color);
            eprintln!("popfetch: {label} {e:#}");
            ExitCode::from(popfetch::error::exit_kind_of(&e).code())
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
