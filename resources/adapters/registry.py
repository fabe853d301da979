"""Which ingestion sources exist: adapter classes and their config entries (``AdapterRegistry``).

A new source is ONE adapter class (a ``BaseAdapter``) plus ONE config entry:

    # a YAML file named by INGESTION_ADAPTERS_FILE (merged over the built-in entries)
    alpha_vantage:
      adapter: my_package.alpha:AlphaVantageAdapter   # module:Class
      config: {api: {key_env_var: ALPHA_VANTAGE_KEY}}  # passed to the class
      priority: 40                                     # curated_bars source priority (lower wins)

and the platform generates its Dagster asset ``raw_bars_alpha_vantage`` (group/pool named after the
source, partitioned by trading date, raw batches + quarantine + manifest + DQ checks + the
adapter's counters in the metadata), adds it upstream of ``curated_bars`` and to curated_bars'
default ``source_priority``. Entry keys:

| key | meaning (default) |
|---|---|
| ``adapter`` | ``module:Class`` (or the class itself) implementing ``BaseAdapter`` (required) |
| ``config`` | the adapter's config dict ({}) |
| ``source`` | the lake's ``source`` label (the entry's name) |
| ``aliases`` | other names ``get_adapter`` accepts ([]) |
| ``priority`` | position in curated_bars' default source priority (100) |
| ``resource`` | a Dagster resource key: the asset gets its adapter from that resource (``adapter()`` or the class's ``from_resource``) instead of ``config`` |
| ``generate_asset`` | build the raw-bars asset (true); false when the source has a hand-written one |
| ``asset_key`` | the raw-bars asset's key (``raw_bars_{source}``) |
| ``group`` / ``pool`` | Dagster group and concurrency pool (the source's name) |
| ``bar_size`` | the bar size written in the bars manifest ("1m") |
| ``description`` | the asset's description |

``AdapterRegistry.get_adapter(provider, config)`` builds an adapter by name (``ValueError`` for an
unknown provider); ``register`` adds one in code (also usable as a class decorator).
"""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from resources.adapters.base_adapter import BaseAdapter

ADAPTERS_FILE_ENV = "INGESTION_ADAPTERS_FILE"
ENTRY_KEYS = {"adapter", "config", "source", "aliases", "priority", "resource", "generate_asset", "asset_key", "group", "pool", "bar_size", "description"}

BUILTIN_SOURCES: dict[str, dict[str, Any]] = {
    "databento": {
        "adapter": "resources.adapters.databento_adapter:DatabentoAdapter",
        "resource": "databento",
        "priority": 10,
        "description": (
            "Raw 1-minute OHLCV bars from Databento (``ohlcv-1m``), source=\"databento\", generated from the adapter registry.\n\n"
            "Fetched through ``DatabentoAdapter`` for the run's symbols and whole date range in 7-day chunks, streamed to disk "
            "and decoded in record batches. Malformed vendor records (non-positive or non-finite price, high < low, open/close "
            "outside the range) are filtered, counted (``malformed_rows_quarantined``, ``validation_errors``) and kept in "
            "``quarantine/raw_bars/source=databento``. Valid bars become append-only content-hashed batches under "
            "``lake/raw_bars/source=databento`` (logged in the bars download manifest) and feed ``curated_bars``. The "
            "adapter's counters (records_fetched, api_calls_made, retry_attempts, validation_errors, processing_time_ms, "
            "data_volume_mb) are in the metadata. Partitioned by XNYS trading date."
        ),
    },
    "interactive_brokers": {
        "adapter": "resources.adapters.interactive_brokers_adapter:InteractiveBrokersAdapter",
        "source": "ib",
        "aliases": ["ib", "tws"],
        "priority": 20,
        "resource": "ib",
        "generate_asset": False,  # raw_bars_ib: platform_assets/ingestion/ib_assets.py (pacing metadata, options tag)
    },
    "sim": {
        "adapter": "resources.adapters.sim_adapter:SimAdapter",
        "aliases": ["offline"],
        "priority": 30,
        "resource": "offline_source",
        "generate_asset": False,  # raw_bars_sim: platform_assets/ingestion/assets.py (faults kept as delivered)
    },
}


def _import(path: str) -> type:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"adapter {path!r} must be written module:Class")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import adapter {path!r}: {error}") from None


@dataclass(frozen=True)
class SourceSpec:
    """One registered source: its adapter class and how its raw-bars asset is built."""

    provider: str
    adapter_class: type[BaseAdapter]
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    aliases: tuple[str, ...] = ()
    priority: int = 100
    resource: str | None = None
    generate_asset: bool = True
    asset_key: str = ""
    group: str = ""
    pool: str = ""
    bar_size: str = "1m"
    description: str = ""

    @classmethod
    def from_entry(cls, provider: str, entry: dict[str, Any] | type) -> "SourceSpec":
        """A config entry (dict, or just the adapter class) -> spec; ``ValueError`` naming the problem."""
        if isinstance(entry, type):
            entry = {"adapter": entry}
        if not isinstance(entry, dict):
            raise ValueError(f"source {provider!r}: the entry must be a mapping, got {type(entry).__name__}")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise ValueError(f"source {provider!r}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(ENTRY_KEYS))})")
        adapter = entry.get("adapter")
        if adapter is None:
            raise ValueError(f"source {provider!r}: 'adapter' (module:Class) is required")
        adapter_class = _import(adapter) if isinstance(adapter, str) else adapter
        if not (isinstance(adapter_class, type) and issubclass(adapter_class, BaseAdapter)):
            raise ValueError(f"source {provider!r}: {adapter!r} is not a BaseAdapter subclass")
        if inspect.isabstract(adapter_class):
            missing = ", ".join(sorted(adapter_class.__abstractmethods__))
            raise ValueError(f"source {provider!r}: {adapter_class.__name__} is abstract (implement {missing})")
        if not provider.replace("_", "").isalnum() or provider != provider.lower():
            raise ValueError(f"source name {provider!r} must be lower-case letters, digits and underscores")
        source = entry.get("source") or provider
        config = entry.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError(f"source {provider!r}: 'config' must be a mapping")
        return cls(
            provider=provider, adapter_class=adapter_class, config=dict(config), source=source,
            aliases=tuple(entry.get("aliases") or ()), priority=int(entry.get("priority", 100)), resource=entry.get("resource"),
            generate_asset=bool(entry.get("generate_asset", True)), asset_key=entry.get("asset_key") or f"raw_bars_{source}",
            group=entry.get("group") or source, pool=entry.get("pool") or source, bar_size=str(entry.get("bar_size", "1m")),
            description=entry.get("description") or f"Raw 1-minute bars from the {provider!r} source ({adapter_class.__name__}), generated from the adapter registry.",
        )

    def build_adapter(self, resources: Any = None) -> BaseAdapter:
        """The adapter for a run: from the Dagster resource named by ``resource``, else from ``config``."""
        if self.resource:
            if resources is None or not hasattr(resources, self.resource):
                raise ValueError(f"source {self.provider!r} needs the Dagster resource {self.resource!r}")
            return self.adapter_class.from_resource(getattr(resources, self.resource))
        return self.adapter_class(dict(self.config))


class AdapterRegistry:
    """Registered ingestion sources by name (``adapters``: provider -> class, as the ingestion
    document's extension point shows; ``sources``: provider -> ``SourceSpec``)."""

    adapters: ClassVar[dict[str, type[BaseAdapter]]] = {}
    sources: ClassVar[dict[str, SourceSpec]] = {}

    @classmethod
    def register(cls, provider: str, adapter_class: type[BaseAdapter] | None = None, **entry):
        """Register ``adapter_class`` under ``provider`` (with the config-entry keys as keyword
        arguments); without a class, returns a class decorator."""
        if adapter_class is None:
            def decorate(klass):
                cls.register(provider, klass, **entry)
                return klass
            return decorate
        return cls.add(SourceSpec.from_entry(provider, {"adapter": adapter_class, **entry}))

    @classmethod
    def add(cls, spec: SourceSpec) -> SourceSpec:
        for name in (spec.provider, *spec.aliases):
            owner = cls._owner(name)
            if owner and owner != spec.provider:
                raise ValueError(f"source name {name!r} is already taken by {owner!r}")
        for other in cls.sources.values():
            if other.provider != spec.provider and (other.source == spec.source or other.asset_key == spec.asset_key):
                raise ValueError(f"source {spec.provider!r}: lake source {spec.source!r} / asset {spec.asset_key!r} already belong to {other.provider!r}")
        cls.sources[spec.provider] = spec
        cls.adapters[spec.provider] = spec.adapter_class
        for alias in spec.aliases:
            cls.adapters[alias] = spec.adapter_class
        return spec

    @classmethod
    def _owner(cls, name: str) -> str | None:
        for spec in cls.sources.values():
            if name == spec.provider or name in spec.aliases:
                return spec.provider
        return None

    @classmethod
    def load_entries(cls, entries: dict[str, Any]) -> list[SourceSpec]:
        """Register every ``{name: entry}`` of a config mapping."""
        if not isinstance(entries, dict):
            raise ValueError("an adapters config must map source names to entries")
        return [cls.add(SourceSpec.from_entry(name, entry)) for name, entry in entries.items()]

    @classmethod
    def load_file(cls, path: str | Path) -> list[SourceSpec]:
        """Register the entries of a YAML/JSON file (``{name: entry}``, or under a ``sources`` key)."""
        document = yaml.safe_load(Path(path).read_text()) or {}
        if isinstance(document, dict) and set(document) == {"sources"}:
            document = document["sources"]
        try:
            return cls.load_entries(document)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def spec(cls, provider: str) -> SourceSpec:
        """The spec of ``provider`` (a name or an alias); ``ValueError`` if unknown."""
        owner = cls._owner(provider)
        if owner is None:
            raise ValueError(f"Unknown provider: {provider} (known: {', '.join(sorted(cls.adapters))})")
        return cls.sources[owner]

    @classmethod
    def get_adapter(cls, provider: str, config: dict):
        """A new adapter of ``provider`` built with ``config``; ``ValueError`` for an unknown provider."""
        adapter_class = cls.adapters.get(provider)
        if not adapter_class:
            raise ValueError(f"Unknown provider: {provider} (known: {', '.join(sorted(cls.adapters))})")
        return adapter_class(config)

    @classmethod
    def specs(cls) -> list[SourceSpec]:
        """Every registered source, by priority then name."""
        return sorted(cls.sources.values(), key=lambda s: (s.priority, s.provider))

    @classmethod
    def source_priority(cls) -> list[str]:
        """The lake ``source`` labels in priority order (curated_bars' default ``source_priority``)."""
        return [spec.source for spec in cls.specs()]

    @classmethod
    def raw_bars_asset_keys(cls) -> list[str]:
        return [spec.asset_key for spec in cls.specs()]

    @classmethod
    def isolated(cls) -> type["AdapterRegistry"]:
        """A registry subclass with copies of the current entries (tests, tools): changes to it
        do not touch the platform's registry."""
        return type(cls.__name__, (cls,), {"adapters": dict(cls.adapters), "sources": dict(cls.sources)})


def load_default_registry() -> type[AdapterRegistry]:
    """The built-in sources plus the entries of ``$INGESTION_ADAPTERS_FILE`` (if set)."""
    AdapterRegistry.load_entries(BUILTIN_SOURCES)
    extra = os.environ.get(ADAPTERS_FILE_ENV)
    if extra:
        AdapterRegistry.load_file(extra)
    return AdapterRegistry
