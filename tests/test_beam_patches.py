"""The speed patches to Beam (pipeline/beam_patches): written for one Beam version, applied only on
it, and giving exactly what Beam's own functions give."""

import inspect

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TypeOptions
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer

from pipeline import beam_patches


def test_the_patches_are_for_the_installed_beam():
    """Fails on a Beam upgrade, on purpose: check each module of pipeline/beam_patches against the
    new version (is the slow path still there? did the patched function change?), then set
    PATCHED_FOR. Until then the patches are not applied and the pipeline runs on Beam as it is."""
    assert beam.__version__ == beam_patches.PATCHED_FOR, (
        f"Apache Beam is {beam.__version__}; pipeline/beam_patches was written for "
        f"{beam_patches.PATCHED_FOR}: check dofn_specs.py and option_views.py against it"
    )
    assert beam_patches.apply_all() is True
    # The functions patched still have the signatures the patches wrap.
    assert list(inspect.signature(userstate.get_dofn_specs.original).parameters) == ["dofn"]
    assert list(inspect.signature(PipelineOptions.view_as.original).parameters) == ["self", "cls"]


BUFFER = BagStateSpec("buffer", beam.coders.StrUtf8Coder())
FLUSH = TimerSpec("flush", beam.TimeDomain.WATERMARK)
BUFFER_PARAM, FLUSH_PARAM = beam.DoFn.StateParam(BUFFER), beam.DoFn.TimerParam(FLUSH)


class _Stateful(beam.DoFn):
    """State and a timer, declared as Beam declares them: in the methods' defaults."""

    def process(self, element, buffer=BUFFER_PARAM, flush=FLUSH_PARAM):
        yield element

    @on_timer(FLUSH)
    def on_flush(self, buffer=BUFFER_PARAM):
        yield from buffer.read()


class _Plain(beam.DoFn):
    def process(self, element):
        yield element


def test_memoized_dofn_specs_are_beams_for_every_kind_of_dofn():
    beam_patches.apply_all()
    patched, original = userstate.get_dofn_specs, userstate.get_dofn_specs.original
    dofns = [_Stateful(), _Stateful(), _Plain(), beam.Map(str.upper).dofn, beam.Map(str.lower).dofn]
    with_own_method = _Plain()
    with_own_method.process = lambda element: [element]
    for dofn in [*dofns, with_own_method]:
        for _ in range(2):  # the second time from the cache
            assert patched(dofn) == original(dofn)
    states, timers = patched(_Stateful())
    assert {s.name for s in states} == {"buffer"} and {t.name for t in timers} == {
        "ts-flush"
    }  # Beam names a timer by its domain
    states.clear()  # a caller changing what it got leaves the cache as it was
    assert {s.name for s in patched(_Stateful())[0]} == {"buffer"}


def test_option_views_are_kept_and_follow_changes():
    beam_patches.apply_all()
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=3"])
    view = options.view_as(TypeOptions)
    assert options.view_as(TypeOptions) is view  # kept
    assert options.view_as(DirectOptions).direct_num_workers == 3
    options.view_as(StandardOptions).runner = "PortableRunner"  # shared values, as in Beam
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    assert PipelineOptions.view_as.original(options, StandardOptions).runner == "PortableRunner"
    other = PipelineOptions(["--direct_num_workers=5"])
    assert other.view_as(DirectOptions).direct_num_workers == 5 and other.view_as(TypeOptions) is not view


@pytest.mark.parametrize("version", ["2.78.0", "2.76.0"])
def test_another_beam_version_is_left_unpatched(monkeypatch, version):
    monkeypatch.setattr(beam, "__version__", version)
    assert beam_patches.apply_all() is False
