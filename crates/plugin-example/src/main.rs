//! `tidegate-custom`: tidegate with the `x-greeting` plugin installed. Run it exactly as
//! `tidegate` (same commands and settings); list the plugin in `plugins`, e.g.
//! `plugins = bundled,x-greeting`.

fn main() -> std::process::ExitCode {
    tidegate_plugin_example::install();
    tidegate::main()
}
