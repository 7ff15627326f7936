"""Campaigns on a real (small, local) Dask distributed cluster store the same table as
a serial run."""
import pytest

from faults import ModelCampaign, ResultStore, run_model_campaign
from simulator import SystolicArray

distributed = pytest.importorskip("distributed")


def test_dask_cluster_gives_the_serial_table(tmp_path):
    c = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=16, trials=48, seed=5,
                      formats=("fp16", "bf16"))
    run_model_campaign(c, tmp_path / "serial.db", executor="serial")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        r = run_model_campaign(c, tmp_path / "dask.db", scheduler=cluster.scheduler_address, batch_size=10)
    assert r.executor == "dask" and r.complete and r.done == 96
    with ResultStore.open(tmp_path / "serial.db") as a, ResultStore.open(tmp_path / "dask.db") as b:
        assert a.rows() == b.rows()


def test_dask_needs_a_scheduler(tmp_path):
    c = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=8, trials=4)
    with pytest.raises(ValueError, match="scheduler must be"):
        run_model_campaign(c, tmp_path / "x.db", executor="dask")
    with pytest.raises(ValueError, match="executor must be one of"):
        run_model_campaign(c, tmp_path / "x.db", executor="threads")
