"""One module per stage; this list is the registry's order (the pipeline's order)."""

from curate.stages.annotate import AnnotateStage
from curate.stages.benchmark import BenchmarkStage
from curate.stages.candidates import CandidatesStage
from curate.stages.export import ExportStage
from curate.stages.noise import NoiseStage
from curate.stages.synsets import SynsetsStage

STAGES = [SynsetsStage, CandidatesStage, AnnotateStage, NoiseStage, ExportStage, BenchmarkStage]
