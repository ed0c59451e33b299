// Browser end-to-end, accounts: OTP login (codes read from the real server's log), wrong code and
// resend countdown, profile name and picture, contacts (add, rename, search, delete), logout.
// Run: node --test tests/e2e/   (needs the binary: see support/harness.mjs for MESCON_BIN)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MesconServer, launchBrowser, newUserPage, uiLogin, tid, eventually, sleep, makePng, shot, DESKTOP, PHONE, addContact, assertText, assertValue, assertPresence } from './support/harness.mjs';

const ALICE = '+12015550111';
const BOB = '+12015550112';
const CAROL = '+12015550103';

let server, browser, alice, bob, aliceId, bobId;
let aliceCodeAt = 0; // when Alice's code was requested: the same number may ask again 30 s later

before(async () => {
  server = await MesconServer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const messages = (page) => page.locator(tid('message'));
const lastMessage = (page) => messages(page).last();

test('login with OTP, including a wrong code and the resend countdown', async () => {
  alice = await newUserPage(browser, server, DESKTOP);
  await alice.locator(tid('login-phone')).fill(ALICE);
  const from = server.lines.length;
  await alice.locator(tid('login-send')).click();
  aliceCodeAt = Date.now();
  const code = await server.otp(ALICE, from);
  // The resend link counts down from resend_after before it can be used.
  await assertText(alice.locator(tid('login-resend')), /Resend code in 0:\d\d/);
  assert.equal(await alice.locator(tid('login-resend')).isDisabled(), true);
  const wrong = code === '000000' ? '111111' : '000000';
  await alice.locator(tid('login-code')).fill(wrong);
  await alice.locator(tid('login-verify')).click();
  await assertText(alice.locator(tid('login-error')), /not right/i);
  await shot(alice, 'desktop-login-wrong-code');
  await alice.locator(tid('login-code')).fill(code);
  await alice.locator(tid('login-verify')).click();
  await alice.locator(tid('nav-chats')).waitFor();
  assert.deepEqual(alice.problems, []);

  bob = await newUserPage(browser, server, DESKTOP);
  await uiLogin(bob, server, BOB);
});

test('login shows the rate limit with its Retry-After when a code is requested again too soon', async () => {
  const page = await newUserPage(browser, server, DESKTOP);
  await page.locator(tid('login-phone')).fill('+12015550177');
  await page.locator(tid('login-send')).click();
  await page.locator(tid('login-code')).waitFor();
  await page.getByText('Wrong number?').click();
  await page.locator(tid('login-send')).click();
  await assertText(page.locator(tid('login-error')), /Try again in \d+ s/);
  await assertText(page.locator(tid('login-send')), /Wait \d+ s/);
  assert.equal(await page.locator(tid('login-send')).isDisabled(), true);
  await shot(page, 'desktop-login-rate-limited');
  await page.context().close();
});

test('profile: display name and picture', async () => {
  await alice.locator(tid('nav-profile')).click();
  await alice.locator(tid('profile-name')).fill('Alice Liddell');
  await alice.locator(tid('profile-save')).click();
  await alice.locator(tid('profile-avatar-input')).setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: makePng() });
  // After the upload the header avatar shows the server's picture (an <img>), not initials.
  await alice.locator(`${tid('nav-profile')} img`).waitFor({ timeout: 10_000 });
  aliceId = await alice.locator(tid('nav-profile')).getAttribute('data-user-id');
  assert.ok(aliceId);
  // The saved name survives a round trip to the server (fresh GET /api/me after reload later).
  await assertValue(alice.locator(tid('profile-name')), 'Alice Liddell');
  await shot(alice, 'desktop-profile');

  await bob.locator(tid('nav-profile')).click();
  await bob.locator(tid('profile-name')).fill('Bob');
  await bob.locator(tid('profile-save')).click();
  await assertValue(bob.locator(tid('profile-name')), 'Bob');
});

test('contacts: add each other, rename, search, delete', async () => {
  await addContact(alice, BOB, 'Bobby');
  const bobItem = alice.locator(`${tid('contact-item')}:has-text("Bobby")`);
  bobId = await bobItem.getAttribute('data-user-id');
  assert.ok(bobId, 'Bob has an account, so the contact carries his user id');

  // Rename
  await bobItem.locator(tid('contact-rename')).click();
  await alice.locator(tid('contact-rename-input')).fill('Bob Builder');
  await alice.locator(tid('contact-rename-save')).click();
  await alice.locator(`${tid('contact-item')}[data-user-id="${bobId}"]:has-text("Bob Builder")`).waitFor();

  // A number without an account, then search and delete it.
  await addContact(alice, '+12015550199', 'Zed Nobody');
  await alice.locator(tid('contacts-search')).fill('zed');
  await eventually(async () => (await alice.locator(tid('contact-item')).count()) === 1, { message: 'search filters to one contact' });
  await alice.locator(`${tid('contact-item')}:has-text("Zed Nobody") ${tid('contact-delete')}`).click();
  await eventually(async () => (await alice.locator(`${tid('contact-item')}:has-text("Zed Nobody")`).count()) === 0, { message: 'contact deleted' });
  await alice.locator(tid('contacts-search')).fill('');
  await shot(alice, 'desktop-contacts');

  await addContact(bob, ALICE, 'Alice');
  const aliceItem = bob.locator(`${tid('contact-item')}[data-user-id="${aliceId}"]`);
  await aliceItem.waitFor();
});

test('phone layout: one pane at a time, list <-> conversation with a back button', async () => {
  const phone = await newUserPage(browser, server, PHONE);
  await uiLogin(phone, server, '+12015550133');
  await addContact(phone, ALICE, 'Alice');
  await phone.locator(`${tid('contact-item')}:has-text("Alice") ${tid('contact-message')}`).click();
  await phone.locator(tid('composer-input')).waitFor();
  // The list pane (with the nav) is hidden while the conversation fills the screen.
  assert.equal(await phone.locator(tid('nav-chats')).isVisible(), false);
  await shot(phone, 'phone-conversation');
  await phone.getByRole('button', { name: 'Back to chats' }).click();
  await phone.locator(tid('nav-chats')).waitFor();
  assert.equal(await phone.locator(tid('composer-input')).isVisible(), false);
  // The browser back button works the same way (the route is in the URL hash).
  await phone.locator(`${tid('contact-item')}:has-text("Alice") ${tid('contact-message')}`).click();
  await phone.locator(tid('composer-input')).waitFor();
  await phone.goBack();
  await phone.locator(tid('nav-chats')).waitFor();
  await phone.context().close();
});

test('logout returns to the login screen and the session is gone after reload', async () => {
  await bob.locator(tid('nav-settings')).click();
  await shot(bob, 'desktop-settings');
  await bob.locator(tid('logout')).click();
  await bob.locator(tid('login-phone')).waitFor();
  await bob.reload();
  await bob.locator(tid('login-phone')).waitFor({ timeout: 15_000 });
});


test('log out on all devices, and delete an account', { timeout: 90_000 }, async () => {
  // Alice has two sessions (two browser contexts); "log out on all devices" ends both.
  const second = await newUserPage(browser, server, DESKTOP);
  await sleep(Math.max(0, aliceCodeAt + 31_000 - Date.now()));
  // A second login for the same number needs a new code, which the resend limit allows after 30 s;
  // the number here is Alice's own, requested by her second device.
  await uiLogin(second, server, ALICE);
  await alice.locator(tid('nav-settings')).click();
  await alice.locator(tid('logout-all')).click();
  await alice.locator(tid('confirm-ok')).click();
  await alice.locator(tid('login-phone')).waitFor();
  await second.reload();
  await second.locator(tid('login-phone')).waitFor({ timeout: 15_000 });

  // Account deletion asks for confirmation, then ends the session for good.
  await uiLogin(second, server, '+12015550144');
  await second.locator(tid('nav-settings')).click();
  await second.locator(tid('delete-account')).click();
  await second.locator(tid('confirm-ok')).click();
  await second.locator(tid('login-phone')).waitFor();
  await second.reload();
  await second.locator(tid('login-phone')).waitFor({ timeout: 15_000 });
  await second.context().close();
});
