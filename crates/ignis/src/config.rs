//! The `serve` configuration file (`--config FILE`, TOML): each key is the long name of a
//! `serve` flag (`listen = "0.0.0.0:8443"`, `tls-cert = "cert.pem"`, `no-demo = true`).
//! Flags on the command line and `IGNIS_*` variables take precedence over the file. The file's
//! values become command-line arguments before the real parse, so clap checks them exactly as
//! it checks flags, and an unknown key is refused with its name. `ignis config print` shows
//! the effective settings.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::Cli;

/// `args` with the values of the `--config` file added for every `serve` flag given neither on
/// the command line nor in the environment; `args` unchanged without a configuration file.
pub(crate) fn expand(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    // Arguments clap refuses are left for the real parse to report.
    let Ok(matches) = Cli::command().try_get_matches_from(&args) else { return Ok(args) };
    let Some((serve, names)) = serve_matches(&matches) else { return Ok(args) };
    let Some(path) = serve.get_one::<PathBuf>("config") else { return Ok(args) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let table: toml::Table =
        text.parse().with_context(|| format!("the configuration file {} is not TOML", path.display()))?;
    let command = Cli::command();
    let flags: Vec<&clap::Arg> =
        command.find_subcommand("serve").map(|serve| serve.get_arguments().collect()).unwrap_or_default();
    let mut extra = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let flag = flags.iter().find(|flag| flag.get_long() == Some(name.as_str()) && name != "config");
        let Some(flag) = flag else {
            bail!("unknown key '{key}' in the configuration file {}", path.display());
        };
        let given = matches!(
            serve.value_source(flag.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !given {
            extra.extend(arguments(&name, value).with_context(|| format!("key '{key}' in {}", path.display()))?);
        }
    }
    let position = after_subcommand(&args, names);
    let mut expanded = args;
    expanded.splice(position..position, extra);
    Ok(expanded)
}

/// The matches of the subcommand that takes `serve`'s flags, and the names leading to it.
fn serve_matches(matches: &ArgMatches) -> Option<(&ArgMatches, &'static [&'static str])> {
    if let Some(serve) = matches.subcommand_matches("serve") {
        return Some((serve, &["serve"]));
    }
    let print = matches.subcommand_matches("config")?.subcommand_matches("print")?;
    Some((print, &["config", "print"]))
}

/// The index just after the subcommand `names` in `args`, where its own flags may go.
fn after_subcommand(args: &[OsString], names: &[&str]) -> usize {
    let mut position = 1;
    for name in names {
        position = args[position..].iter().position(|arg| arg == name).map_or(args.len(), |at| position + at + 1);
    }
    position.min(args.len())
}

/// The command-line arguments for `--name` = `value`.
fn arguments(name: &str, value: &toml::Value) -> anyhow::Result<Vec<OsString>> {
    let flag = OsString::from(format!("--{name}"));
    Ok(match value {
        toml::Value::String(text) => vec![flag, text.into()],
        toml::Value::Integer(number) => vec![flag, number.to_string().into()],
        toml::Value::Float(number) => vec![flag, number.to_string().into()],
        toml::Value::Boolean(true) => vec![flag],
        toml::Value::Boolean(false) => Vec::new(),
        toml::Value::Array(values) => {
            let mut all = Vec::new();
            for value in values {
                all.extend(arguments(name, value)?);
            }
            all
        }
        _ => bail!("the value must be a string, a number, a boolean or a list of them"),
    })
}

/// `ignis config print`: the effective `serve` settings as TOML, the database password
/// masked, each with where it came from.
pub(crate) fn print(args: &[OsString]) {
    let Ok(all) = Cli::command().try_get_matches_from(args) else { return };
    let Some((serve, _)) = serve_matches(&all) else { return };
    let command = Cli::command();
    let Some(flags) = command.find_subcommand("serve") else { return };
    let mut lines = Vec::new();
    for flag in flags.get_arguments() {
        let (Some(name), id) = (flag.get_long(), flag.get_id().as_str()) else { continue };
        if matches!(name, "help" | "log-level") {
            continue;
        }
        let values: Vec<String> = serve
            .get_raw(id)
            .map(|values| values.map(|value| mask(name, &value.to_string_lossy())).collect())
            .unwrap_or_default();
        let source = match serve.value_source(id) {
            Some(ValueSource::CommandLine) => "command line or configuration file",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let shown = match values.as_slice() {
            [] => continue,
            [one] => toml::Value::String(one.clone()).to_string(),
            many => toml::Value::Array(many.iter().cloned().map(toml::Value::String).collect()).to_string(),
        };
        lines.push(format!("{name} = {shown} # {source}"));
    }
    #[allow(clippy::print_stdout)] // The settings are the command's output.
    {
        println!("{}", lines.join("\n"));
    }
}

/// `value` of the flag `name` as it may be shown: a database URL without its password.
fn mask(name: &str, value: &str) -> String {
    if name == "database-url" { crate::serve::redact(value) } else { value.to_owned() }
}
