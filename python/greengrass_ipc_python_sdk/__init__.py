# Coupler's client for the Greengrass Lambda IPC (HTTP on loopback).
