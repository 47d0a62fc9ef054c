"""Correction under hostile input (issue 17): each test names the item it covers."""
