terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }
  # Remote state: fill in per environment (terraform init -backend-config=envs/prod.backend.hcl).
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project     = "kalshi-data"
      environment = var.environment
      managed_by  = "terraform"
    }
  }
}
