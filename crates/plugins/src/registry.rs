//! Which plugins this binary can run: the bundled ones, and any a user registers in their
//! own build.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidegate_model::plugins::PluginConfig;

use crate::phase::Plugin;
use crate::runtime::Runtime;

/// Builds instances of one plugin from their validated configs.
pub trait Factory: Send + Sync + 'static {
    /// As in `plugins.name`.
    fn name(&self) -> &'static str;
    /// Kong's execution priority: higher runs first.
    fn priority(&self) -> i64;
    /// Semver; the DP advertises it and the CP checks it before pushing a config that
    /// uses the plugin.
    fn version(&self) -> &'static str;
    /// One instance. An error leaves the plugin out of this config version (logged);
    /// configs are validated on the CP, so this is for what only the DP can check.
    fn build(&self, config: &PluginConfig, rt: &Runtime) -> Result<Arc<dyn Plugin>, String>;
}

#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn Factory>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every bundled plugin.
    pub fn bundled() -> Self {
        let mut r = Self::empty();
        crate::bundled::register_all(&mut r);
        r
    }

    /// The bundled plugins and those a custom build registered with [`register_custom`].
    pub fn installed() -> Self {
        let mut r = Self::bundled();
        for f in CUSTOM.read().unwrap_or_else(|p| p.into_inner()).iter() {
            r.factories.insert(f.name(), f.clone());
        }
        r
    }

    /// Adds (or replaces) a plugin.
    pub fn register(&mut self, f: impl Factory) -> &mut Self {
        self.factories.insert(f.name(), Arc::new(f));
        self
    }

    /// Keeps only the named plugins (the `plugins` setting).
    pub fn retain(&mut self, names: &[String]) -> &mut Self {
        self.factories.retain(|n, _| names.iter().any(|m| m == n));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Factory>> {
        self.factories.get(name)
    }

    /// (name, version) of every plugin, by name.
    pub fn versions(&self) -> Vec<(String, String)> {
        self.factories
            .values()
            .map(|f| (f.name().to_string(), f.version().to_string()))
            .collect()
    }
}

static CUSTOM: std::sync::RwLock<Vec<Arc<dyn Factory>>> = std::sync::RwLock::new(Vec::new());

/// Adds a custom plugin's runtime to every [`Registry::installed`] made afterwards. Its
/// schema goes to `tidegate_model::plugins::register_custom`; a custom build's `main`
/// calls both before starting the node (see the example plugin crate).
pub fn register_custom(f: impl Factory) {
    let mut all = CUSTOM.write().unwrap_or_else(|p| p.into_inner());
    all.retain(|g| g.name() != f.name());
    all.push(Arc::new(f));
}

/// A custom plugin's config, read into the plugin's own type once per config version.
pub fn custom_config<T: serde::de::DeserializeOwned>(config: &PluginConfig) -> Result<T, String> {
    match config {
        PluginConfig::Custom(c) => {
            serde_json::from_value(serde_json::Value::Object(c.config.clone()))
                .map_err(|e| format!("config of '{}': {e}", c.name))
        }
        other => Err(format!(
            "expected a custom plugin's config, got '{}'",
            other.name()
        )),
    }
}
