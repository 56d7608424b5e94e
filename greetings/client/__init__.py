"""The end user's side: signing in, Firestore as that user, uploads, prospects, job views."""
