"""Families on facenet-pytorch, whose wheel ships the weights (MTCNN faces)."""
