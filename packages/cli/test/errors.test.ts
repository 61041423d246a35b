import { DdsError, InvalidArgumentError, IoError, ModelFormatError } from '@ddsjs/nn';
import { OutputPathError } from '@ddsjs/sd';
import { TranslatorDivergedError } from '@ddsjs/dds';
import { CliError } from '../src/args';
import { exitCodeFor, userMessage } from '../src/errors';

test('exit code 2 for usage errors and library errors on the user input, 1 for the rest', () => {
  expect(exitCodeFor(new CliError('missing --image'))).toBe(2);
  expect(exitCodeFor(new InvalidArgumentError('trainTranslator: batchSize must be at least 1, got 0'))).toBe(2);
  expect(exitCodeFor(new ModelFormatError('unet/config.json: not a JSON object'))).toBe(2);
  expect(exitCodeFor(new IoError('model not found: x'))).toBe(2);
  expect(exitCodeFor(new OutputPathError('output out.png exists; pass --force to overwrite it'))).toBe(2);
  expect(exitCodeFor(new DdsError('SHAPE_MISMATCH', 'x'))).toBe(2);
  expect(exitCodeFor(new TranslatorDivergedError('trainTranslator: the loss is NaN at step 3', 3, null))).toBe(1);
  expect(exitCodeFor(new Error('a bug'))).toBe(1);
  expect(exitCodeFor(new RangeError('Invalid array length'))).toBe(1);
});

test('the printed line drops the library function name, not a file name, and is one line', () => {
  expect(userMessage(new InvalidArgumentError('trainTranslator: resumeFrom tr was trained with other options'))).toBe('resumeFrom tr was trained with other options');
  expect(userMessage(new InvalidArgumentError('Translator.translateImage: unknown task "x"'))).toBe('unknown task "x"');
  expect(userMessage(new ModelFormatError('config.json: not a JSON object'))).toBe('config.json: not a JSON object');
  expect(userMessage(new IoError('readImage: no such file \'a.png\''))).toBe("no such file 'a.png'");
  expect(userMessage(new Error('plainFn: kept'))).toBe('plainFn: kept');
  expect(userMessage(new CliError('two\nlines'))).toBe('two lines');
});
