# Three gatherers, one per availability zone (private subnets, no public IP), each with an encrypted gp3
# data volume for TimescaleDB, Redis AOF and the router spill. The first one also runs the dedup worker
# (its instance profile may write the lake); the others may not.

variable "name" {
  type = string
}

variable "subnet_ids" {
  type = list(string)
}

variable "security_group_id" {
  type = string
}

variable "instance_type" {
  type = string
}

variable "data_volume_gb" {
  type = number
}

variable "instance_profile" {
  type = string
}

variable "dedup_profile" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"] # Debian
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_instance" "gatherer" {
  count                   = length(var.subnet_ids)
  ami                     = data.aws_ami.debian.id
  instance_type           = var.instance_type
  subnet_id               = var.subnet_ids[count.index]
  vpc_security_group_ids  = [var.security_group_id]
  iam_instance_profile    = count.index == 0 ? var.dedup_profile : var.instance_profile
  ebs_optimized           = true
  monitoring              = true
  disable_api_termination = true

  metadata_options {
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 40
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  tags = { Name = "${var.name}-g${count.index + 1}", role = "gatherer", gatherer_id = "g${count.index + 1}" }
}

resource "aws_ebs_volume" "data" {
  count             = length(var.subnet_ids)
  availability_zone = aws_instance.gatherer[count.index].availability_zone
  size              = var.data_volume_gb
  type              = "gp3"
  throughput        = 500
  iops              = 6000
  encrypted         = true
  kms_key_id        = var.kms_key_arn
  tags              = { Name = "${var.name}-g${count.index + 1}-data" }
}

resource "aws_volume_attachment" "data" {
  count       = length(var.subnet_ids)
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[count.index].id
  instance_id = aws_instance.gatherer[count.index].id
}

output "instance_ids" {
  value = aws_instance.gatherer[*].id
}

output "hosts" {
  value = [for i, inst in aws_instance.gatherer : {
    gatherer_id = "g${i + 1}"
    instance_id = inst.id
    private_ip  = inst.private_ip
    az          = inst.availability_zone
  }]
}

output "dedup_host" {
  value = { instance_id = aws_instance.gatherer[0].id, private_ip = aws_instance.gatherer[0].private_ip }
}
