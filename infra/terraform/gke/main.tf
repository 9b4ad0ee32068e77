# A GKE cluster for LMForge: a small CPU pool for KFP, MLflow and the data stages, and an
# autoscaled GPU pool that only tainted-tolerating training pods land on. The labels and the
# taint match the `gpu` preset's cluster section (node_selector lmforge.io/pool=gpu, toleration
# nvidia.com/gpu:NoSchedule). Not applied from here: providers cannot be downloaded on this machine.

resource "google_container_cluster" "lmforge" {
  name                     = var.cluster_name
  location                 = var.region
  remove_default_node_pool = true
  initial_node_count       = 1
  networking_mode          = "VPC_NATIVE"
  ip_allocation_policy {}

  # NetworkPolicies in infra/ need an enforcing dataplane.
  datapath_provider = "ADVANCED_DATAPATH"

  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }
}

resource "google_container_node_pool" "cpu" {
  name     = "cpu"
  cluster  = google_container_cluster.lmforge.id
  location = var.region

  autoscaling {
    min_node_count = 1
    max_node_count = 4
  }

  node_config {
    machine_type = "e2-standard-8"
    labels       = { "lmforge.io/pool" = "cpu" }
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

resource "google_container_node_pool" "gpu" {
  name           = "gpu"
  cluster        = google_container_cluster.lmforge.id
  location       = var.region
  node_locations = var.gpu_zones

  autoscaling {
    min_node_count = 0 # no idle GPU nodes between runs
    max_node_count = var.gpu_max_nodes
  }

  node_config {
    machine_type = var.gpu_machine_type
    labels       = { "lmforge.io/pool" = "gpu", "lmforge.io/gpu" = var.gpu_type }
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpu_count
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }

    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

output "get_credentials" {
  value = "gcloud container clusters get-credentials ${google_container_cluster.lmforge.name} --region ${var.region} --project ${var.project}"
}
