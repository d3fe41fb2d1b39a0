"""Readers and converters for the official raw releases (NTU RGB+D, PKU-MMD, pyskl annotations)."""
