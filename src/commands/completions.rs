//! `stripe-router completions SHELL`: the shell completion script, with
//! clap_complete's bash output repaired for a binary name with a hyphen.
//!
//! clap_complete's bash generator names the states of its completion
//! function two ways for `stripe-router` (`stripe__router__subcmd__serve`
//! where it sets the state, `stripe__subcmd__router__subcmd__serve` where it
//! reads it: clap-rs/clap#6421, #6529), so nothing below the top level
//! completes. The script is generated, then the reading side renamed to the
//! writing side's spelling; once clap is fixed there is nothing to rename.

use std::io::Write;

use clap_complete::Shell;

/// Writes the completion script for `shell` and `command` (named `bin`).
pub fn write(
    shell: Shell,
    command: &mut clap::Command,
    bin: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, command, bin, &mut script);
    if shell == Shell::Bash {
        let text = String::from_utf8_lossy(&script);
        return out.write_all(repair_bash(&text, bin).as_bytes());
    }
    out.write_all(&script)
}

/// Renames the states that the bash script's `case "${cmd}"` reads to the
/// names its loop over the words sets.
fn repair_bash(script: &str, bin: &str) -> String {
    let set = bin.replace('-', "__");
    let read = bin.replace('-', "__subcmd__");
    if set == read {
        return script.to_owned();
    }
    script.replace(&read, &set)
}

#[cfg(test)]
#[path = "completions_tests.rs"]
mod tests;
