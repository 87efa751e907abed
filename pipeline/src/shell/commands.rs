//! Backslash commands of the interactive shell, as in psql and datafusion-cli.

/// A line of the shell that is not SQL.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `\d`: list tables and views.
    ListTables,
    /// `\d NAME`: the columns of one table.
    Describe(String),
    /// `\?`: help.
    Help,
    /// `\q`: quit.
    Quit,
}

pub const HELP: &str = "\\d          list tables and views
\\d NAME     show the schema of NAME
\\?          this help
\\q          quit
SQL statements end with `;` and may span several lines.";

impl Command {
    /// Parses a line starting with a backslash; `Err` carries a message for an unknown command.
    pub fn parse(line: &str) -> Result<Command, String> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("\\d"), None, _) => Ok(Command::ListTables),
            (Some("\\d"), Some(name), None) => Ok(Command::Describe(name.trim_end_matches(';').to_string())),
            (Some("\\?"), None, _) => Ok(Command::Help),
            (Some("\\q"), None, _) => Ok(Command::Quit),
            _ => Err(format!("unknown command `{line}`; \\? lists the commands")),
        }
    }

    /// The SQL that answers a listing command, over DataFusion's information_schema.
    pub fn query(&self) -> Option<String> {
        match self {
            Command::ListTables => Some(
                "SELECT table_name, table_type FROM information_schema.tables \
                 WHERE table_schema = 'public' ORDER BY table_name"
                    .to_string(),
            ),
            Command::Describe(name) => Some(format!(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = '{}' ORDER BY ordinal_position",
                name.replace('\'', "''")
            )),
            Command::Help | Command::Quit => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn parses_commands() {
        assert_eq!(Command::parse("\\d"), Ok(Command::ListTables));
        assert_eq!(
            Command::parse("\\d  distances"),
            Ok(Command::Describe("distances".into()))
        );
        assert_eq!(Command::parse("\\q"), Ok(Command::Quit));
        assert!(Command::parse("\\x").unwrap_err().contains("unknown command"));
    }
}
