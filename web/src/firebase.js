// Which Firebase project, and whether this is the local stack: decided by what Hosting serves.
//   /__/firebase/init.json  the project's web config (Hosting serves it, also in its emulator)
//   /emulators.json         written by `greetings stack up`, never deployed: 200 = local stack

import { initializeApp } from 'firebase/app';
import { connectAuthEmulator, getAuth } from 'firebase/auth';
import { connectFirestoreEmulator, getFirestore } from 'firebase/firestore';
import { connectFunctionsEmulator, getFunctions } from 'firebase/functions';

export const FUNCTIONS_REGION = 'us-central1';

async function fetchJson(url, { optional = false } = {}) {
  const response = await fetch(url, { cache: 'no-store' });
  if (optional && response.status === 404) return null;
  if (!response.ok) throw new Error(`${url} answered ${response.status} ${response.statusText}`);
  return response.json();
}

/** The app's services, connected to the emulators when the page is served by the local stack. */
export async function connect() {
  const config = await fetchJson('/__/firebase/init.json');
  if (!config || !config.projectId) {
    throw new Error('/__/firebase/init.json holds no Firebase web config (is this page served by Firebase Hosting?)');
  }
  const emulators = await fetchJson('/emulators.json', { optional: true });
  const app = initializeApp(config);
  const auth = getAuth(app);
  const db = getFirestore(app);
  const functions = getFunctions(app, FUNCTIONS_REGION);
  if (emulators) {
    if (emulators.auth) connectAuthEmulator(auth, emulators.auth, { disableWarnings: true });
    if (emulators.firestore) {
      connectFirestoreEmulator(db, emulators.firestore.host, Number(emulators.firestore.port));
    }
    if (emulators.functions) {
      connectFunctionsEmulator(functions, emulators.functions.host, Number(emulators.functions.port));
    }
  }
  return { app, auth, db, functions, config, local: Boolean(emulators) };
}
