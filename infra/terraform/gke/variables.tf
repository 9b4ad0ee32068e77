variable "project" {
  description = "GCP project id"
  type        = string
}

variable "region" {
  description = "region of the cluster (GPU availability differs by zone)"
  type        = string
  default     = "us-central1"
}

variable "gpu_zones" {
  description = "zones of the GPU pool, where the GPU type is offered"
  type        = list(string)
  default     = ["us-central1-a"]
}

variable "cluster_name" {
  type    = string
  default = "lmforge"
}

variable "gpu_machine_type" {
  description = "one node = one pretraining task (cluster.stages.pretrain.accelerator_count GPUs)"
  type        = string
  default     = "a3-highgpu-8g"
}

variable "gpu_type" {
  type    = string
  default = "nvidia-h100-80gb"
}

variable "gpu_count" {
  type    = number
  default = 8
}

variable "gpu_max_nodes" {
  description = "upper bound of the autoscaled GPU pool (a multi-node PyTorchJob needs --nodes of them)"
  type        = number
  default     = 4
}
