"""metrics/counter_attributes.py declares for the type checker the columns that metrics/models.py
adds at run time: these tests fail when the declarations and the models' real fields drift apart."""

import ast
import inspect
import typing

import pytest
from django.db import models

from bpf.classes import ALL_COUNTER_NAMES
from metrics import models as metrics_models
from metrics.counter_attributes import CounterAttributes, PeakAttributes
from metrics.models import (
    PEAKS,
    CounterColumns,
    HourRollup,
    MinuteRollup,
    Rollup,
    Sample,
    SamplerRun,
)

COUNTER_MODELS = (SamplerRun, Sample, MinuteRollup, HourRollup)
ROLLUP_MODELS = (MinuteRollup, HourRollup)
PEAK_COLUMNS = tuple(column for column, _directions, _unit in PEAKS)


def declared(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


# Each declaration, the names it must hold, the models with those columns, and their field type.
DECLARATIONS = {
    "counters": (CounterAttributes, ALL_COUNTER_NAMES, COUNTER_MODELS, models.BigIntegerField, int),
    "peaks": (PeakAttributes, PEAK_COLUMNS, ROLLUP_MODELS, models.FloatField, float),
}


@pytest.mark.parametrize("kind", DECLARATIONS)
def test_the_declarations_are_the_columns(kind):
    declaration, columns, _models, _field, _type = DECLARATIONS[kind]
    names = declared(declaration)
    assert sorted(set(columns) - set(names)) == [], "undeclared columns"
    assert sorted(set(names) - set(columns)) == [], "declared, not columns"


@pytest.mark.parametrize(
    "kind, model",
    [(kind, model) for kind, (_, _, models_, _, _) in DECLARATIONS.items() for model in models_],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_the_declared_types_are_the_models_fields(kind, model):
    declaration, _columns, _models, field_class, python_type = DECLARATIONS[kind]
    for name, annotation in declared(declaration).items():
        field = model._meta.get_field(name)
        assert isinstance(field, field_class), name
        assert not field.null, name
        assert annotation is python_type, name


def _class_body_names() -> dict[str, set[str]]:
    """Per class of metrics/models.py, the names its class statement assigns or annotates."""
    tree = ast.parse(inspect.getsource(metrics_models))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            targets: set[str] = set()
            for statement in node.body:
                if isinstance(statement, ast.Assign):
                    targets |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
                elif isinstance(statement, ast.AnnAssign) and isinstance(
                    statement.target, ast.Name
                ):
                    targets.add(statement.target.id)
            names[node.name] = targets
    return names


@pytest.mark.parametrize("model", COUNTER_MODELS, ids=lambda m: m.__name__)
def test_every_field_is_visible_to_the_type_checker(model):
    """A field is in some class statement of the model's (which the Django plugin reads) or in
    the declarations: a column added by another add_to_class loop must be declared too."""
    body_names = _class_body_names()
    visible = set(declared(CounterAttributes))
    if issubclass(model, Rollup):
        visible |= set(declared(PeakAttributes))
    for cls in model.__mro__:
        if cls.__module__ == model.__module__:
            visible |= body_names.get(cls.__name__, set())
    fields = {f.name for f in model._meta.get_fields() if f.concrete and not f.auto_created}
    assert sorted(fields - visible) == []


def test_declarations_are_no_bases_at_run_time():
    """Only the type checker sees them as bases: the models, and so their migration state, are
    as they were without them."""
    assert CounterColumns.__bases__ == (models.Model,)
    assert Rollup.__bases__ == (CounterColumns,)
    for model in COUNTER_MODELS:
        assert not issubclass(model, (CounterAttributes, PeakAttributes))
